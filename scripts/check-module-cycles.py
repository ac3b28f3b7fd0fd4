#!/usr/bin/env python3
"""Fails on an import cycle between the library's module files.

Graph: one node per module file under src/ (reached from src/lib.rs through
`mod NAME;`). An edge A -> B, with A's file and line, for every path in A
that lands in B: `use` declarations (`pub use` re-exports too), `crate::`,
`super::` and `self::` paths in code, and paths through a module name that
is in scope (a child module, or a module imported by `use`). A path lands in
the deepest module it names: `crate::ingest::frame::split` in
src/ingest/frame.rs, `crate::metrics::Store` in src/metrics/mod.rs (an item
a parent re-exports from its child is the parent's API and lands there).

Not edges: a parent's `mod child;` (that declares, it does not import), a
module's paths into its own submodules (a module is made of its children:
`config/mod.rs` using `config/rules.rs`, or re-exporting from it, is one
module using its parts; the child's `super::` paths back are edges, so two
siblings that need each other through their parent still form a cycle), and
a `use` that only brings a module's name into scope (the paths through that
name are the edges, at the lines that use them). Test code counts: inline
`mod tests { ... }` blocks belong to their file, so a test that imports a
module that imports the file back is a cycle too. Comments, doc comments and
string literals are skipped, so intra-doc links are not edges.

src/main.rs is another crate (the binary): it can use the library but the
library cannot use it back, so it cannot be in a cycle and is left out.

Why not `cargo modules dependencies --acyclic` (cargo-modules 0.27): it
checks the graph of items, not of modules, before any --no-fns/--no-types
filter applies, so on this crate it stops at the first "cycle" between a
type and its own method (`PipelineHandle` -> `PipelineHandle::apply`), and
it reports only one cycle. Installing it also took 13.5 minutes on the
2-core machine (rust-analyzer crates), most of CI's time budget.

Usage: scripts/check-module-cycles.py [CRATE_DIR]    (default: the repo)
       scripts/check-module-cycles.py --self-test
Exit status: 0 no cycle, 1 cycles (printed), 2 the tool itself failed.
"""

import os
import sys
import tempfile
from collections import defaultdict, deque

# ---------------------------------------------------------------- lexing


def tokens(text):
    """Identifiers, `::` and single punctuation, each with its line;
    comments, strings, chars and lifetimes are dropped."""
    out = []
    i, n, line = 0, len(text), 1

    def skip_string(j):
        # j at the opening quote; returns the index after the closing one.
        nonlocal line
        j += 1
        while j < n:
            c = text[j]
            if c == "\\":
                if j + 1 < n and text[j + 1] == "\n":
                    line += 1
                j += 2
                continue
            if c == "\n":
                line += 1
            if c == '"':
                return j + 1
            j += 1
        return j

    def skip_raw_string(j):
        # j at the `r`; returns the index after the closing quote and hashes.
        nonlocal line
        j += 1
        hashes = 0
        while j < n and text[j] == "#":
            hashes += 1
            j += 1
        if j >= n or text[j] != '"':
            return None
        close = '"' + "#" * hashes
        end = text.find(close, j + 1)
        end = n if end < 0 else end + len(close)
        line += text.count("\n", j, end)
        return end

    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
        elif c.isspace():
            i += 1
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    if text[j] == "\n":
                        line += 1
                    j += 1
            i = j
        elif c == '"':
            i = skip_string(i)
        elif c in "rb" and (text.startswith('r"', i) or text.startswith("r#", i)
                            or text.startswith('br"', i) or text.startswith("br#", i)
                            or text.startswith('b"', i) or text.startswith("b'", i)):
            if text.startswith('b"', i):
                i = skip_string(i + 1)
            elif text.startswith("b'", i):
                i = skip_char(text, i + 1)
            else:
                j = i + 1 if c == "b" else i
                end = skip_raw_string(j)
                if end is None:
                    # `r#ident`: a raw identifier.
                    k = i + 2
                    while k < n and (text[k].isalnum() or text[k] == "_"):
                        k += 1
                    out.append((text[i + 2:k], line))
                    i = k
                else:
                    i = end
        elif c == "'":
            i = skip_char(text, i)
        elif c.isalpha() or c == "_":
            j = i + 1
            while j < n and (text[j].isalnum() or text[j] == "_"):
                j += 1
            out.append((text[i:j], line))
            i = j
        elif c.isdigit():
            j = i + 1
            while j < n and (text[j].isalnum() or text[j] in "_."):
                if text[j] == "." and not (j + 1 < n and text[j + 1].isdigit()):
                    break
                j += 1
            i = j
        elif text.startswith("::", i):
            out.append(("::", line))
            i += 2
        else:
            out.append((c, line))
            i += 1
    return out


def skip_char(text, i):
    """i at a `'`: skip a char literal, or just the quote of a lifetime."""
    n = len(text)
    if i + 1 < n and text[i + 1] == "\\":
        end = text.find("'", i + 2)
        # '\'' : the escaped quote is not the end.
        if end == i + 3 and text[i + 2] == "'":
            end = text.find("'", i + 4)
        return n if end < 0 else end + 1
    if i + 2 < n and text[i + 2] == "'":
        return i + 3
    # A multi-byte char is one Python character too, so a lifetime is left.
    return i + 1


# ---------------------------------------------------------------- modules


class Module:
    def __init__(self, path, file, parent):
        self.path = path  # tuple of names, () for the crate root
        self.file = file  # the file it lives in (inline modules share it)
        self.parent = parent
        self.children = {}  # name -> Module


def child_dir(file, is_root):
    """The directory the `mod name;` declarations of `file` point into."""
    base = os.path.basename(file)
    here = os.path.dirname(file)
    if is_root or base == "mod.rs":
        return here
    return os.path.join(here, os.path.splitext(base)[0])


def child_file(d, name):
    for cand in (os.path.join(d, name + ".rs"), os.path.join(d, name, "mod.rs")):
        if os.path.isfile(cand):
            return cand
    return None


def scan_file(file, module, root_dir, files):
    """Build the module tree under `module` (whose file is `file`), keeping
    each file's tokens and where its inline modules start and end."""
    with open(file, encoding="utf-8") as f:
        toks = tokens(f.read())
    files[file] = toks
    stack = [(module, -1)]  # (module, brace depth at which it closes)
    depth = 0
    spans = []  # (token index, module) where the current module changes
    spans.append((0, module))
    k = 0
    while k < len(toks):
        t = toks[k][0]
        if t == "{":
            depth += 1
        elif t == "}":
            depth -= 1
            if len(stack) > 1 and depth == stack[-1][1]:
                stack.pop()
                spans.append((k + 1, stack[-1][0]))
        elif t == "mod" and k + 2 < len(toks) and is_ident(toks[k + 1][0]):
            name, nxt = toks[k + 1][0], toks[k + 2][0]
            cur = stack[-1][0]
            if nxt == ";":
                # Inside an inline module: a directory named after it.
                d = os.path.join(child_dir(file, module.parent is None), *cur.path[len(module.path):])
                cf = child_file(d, name)
                if cf is not None:
                    child = Module(cur.path + (name,), cf, cur)
                    cur.children[name] = child
                    scan_file(cf, child, root_dir, files)
            elif nxt == "{":
                child = Module(cur.path + (name,), file, cur)
                cur.children[name] = child
                stack.append((child, depth))
                depth += 1
                spans.append((k + 3, child))
                k += 3
                continue
        k += 1
    SPANS[file] = spans


SPANS = {}


def is_ident(t):
    return t[0].isalpha() or t[0] == "_"


def module_at(file, k):
    cur = None
    for start, m in SPANS[file]:
        if start <= k:
            cur = m
        else:
            break
    return cur


# ---------------------------------------------------------------- paths

KEYWORD_STARTS = {"crate", "super", "self"}


def resolve(start, segs, aliases):
    """The module a path lands in and whether every segment named a module,
    or (None, False) if it is not a path into this crate. `start` is the
    module the path is written in."""
    if not segs:
        return None, False
    m, i = start, 0
    while i < len(segs) and segs[i] in KEYWORD_STARTS:
        if segs[i] == "crate":
            while m.parent is not None:
                m = m.parent
        elif segs[i] == "super":
            m = m.parent
            if m is None:
                return None, False
        i += 1
    if i == 0:
        m = lookup(start, segs[0], aliases)
        if m is None:
            return None, False
        i = 1
    while i < len(segs) and segs[i] in m.children:
        m = m.children[segs[i]]
        i += 1
    return m, i == len(segs)


def lookup(start, name, aliases):
    """A bare name that is a module in scope: a child, or an imported one
    (inline test modules see their file's imports through `use super::*`)."""
    m = start
    while m is not None:
        if name in m.children:
            return m.children[name]
        if (m.file, m.path, name) in aliases:
            return aliases[(m.file, m.path, name)]
        if m.parent is None or m.parent.file != m.file:
            break
        m = m.parent
    return None


def parse_use(toks, k):
    """Parse the use tree after `use` at toks[k]; returns (leaves, next
    index). A leaf is (segments, line, kind, name): kind 'path', 'self'
    (`{self}`: the module of the segments) or 'glob'; name is what it binds
    (`as` included), None for a glob or `as _`."""
    leaves = []

    def tree(k, prefix):
        segs = list(prefix)
        line = toks[k][1] if k < len(toks) else 0
        if k < len(toks) and toks[k][0] == "::":
            k += 1
        while k < len(toks):
            t, line = toks[k]
            if t == "{":
                k += 1
                while k < len(toks) and toks[k][0] != "}":
                    k = tree(k, segs)
                    if k < len(toks) and toks[k][0] == ",":
                        k += 1
                return k + 1
            if t == "*":
                leaves.append((segs, line, "glob", None))
                return k + 1
            if is_ident(t):
                kind = "path"
                if t == "self" and segs:
                    kind = "self"  # `{self, ...}`: the module itself
                else:
                    segs = segs + [t]
                k += 1
                if kind == "path" and k < len(toks) and toks[k][0] == "::":
                    k += 1
                    continue
                name = segs[-1]
                if k + 1 < len(toks) and toks[k][0] == "as":
                    name = toks[k + 1][0]
                    k += 2
                leaves.append((segs, line, kind, None if name == "_" else name))
                return k
            return k
        return k

    k = tree(k, [])
    while k < len(toks) and toks[k][0] != ";":
        k += 1
    return leaves, k + 1


def contains(outer, inner):
    """Whether module file `inner` is a submodule of module file `outer`."""
    base = os.path.basename(outer)
    d = os.path.dirname(outer) if base in ("mod.rs", "lib.rs") else outer[:-len(".rs")]
    return inner.startswith(d + os.sep)


def edges_of(root, files):
    """(from file, to file, line, text) for every path that crosses files."""
    aliases = {}
    uses = []  # (file, module, leaves)
    # First the `use` declarations: they also define the module aliases.
    for file, toks in files.items():
        k = 0
        while k < len(toks):
            if toks[k][0] == "use" and (k == 0 or toks[k - 1][0] != "::"):
                m = module_at(file, k)
                leaves, k = parse_use(toks, k + 1)
                uses.append((file, m, leaves))
                continue
            k += 1
    # Twice: an alias may be declared through another alias.
    for _ in range(2):
        for file, m, leaves in uses:
            for segs, line, kind, name in leaves:
                target, whole = resolve(m, segs, aliases)
                if target is not None and whole and kind != "glob" and name:
                    aliases[(m.file, m.path, name)] = target
    out = []
    for file, m, leaves in uses:
        for segs, line, kind, name in leaves:
            target, whole = resolve(m, segs, aliases)
            if target is None:
                continue
            if whole and kind != "glob":
                continue  # only the name; paths through it are the edges
            if target.file != file and not contains(file, target.file):
                out.append((file, target.file, line, "use " + "::".join(segs) + ("::*" if kind == "glob" else "")))
    # Then paths in code.
    for file, toks in files.items():
        k = 0
        in_use = False
        while k < len(toks):
            t = toks[k][0]
            if t == "use" and (k == 0 or toks[k - 1][0] != "::"):
                in_use = True
            elif t == ";" and in_use:
                in_use = False
            if in_use or not is_ident(t) or (k > 0 and toks[k - 1][0] in ("::", ".")) \
                    or k + 2 >= len(toks) or toks[k + 1][0] != "::":
                k += 1
                continue
            segs, j = [t], k + 1
            while j + 1 < len(toks) and toks[j][0] == "::" and is_ident(toks[j + 1][0]):
                segs.append(toks[j + 1][0])
                j += 2
            # `pub(in crate::x)` names where an item is visible, not a use.
            if len(segs) > 1 and toks[k - 1][0] != "in":
                m = module_at(file, k)
                target, _ = resolve(m, segs, aliases)
                if target is not None and target.file != file and not contains(file, target.file):
                    out.append((file, target.file, toks[k][1], "::".join(segs)))
            k = j
    return out


# ---------------------------------------------------------------- cycles


def sccs(nodes, graph):
    """Tarjan's strongly connected components (iterative)."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]
    for v in nodes:
        if v in index:
            continue
        work = [(v, iter(sorted(graph[v])))]
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        while work:
            u, it = work[-1]
            advanced = False
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    advanced = True
                    break
                if w in on:
                    low[u] = min(low[u], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[u])
            if low[u] == index[u]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == u:
                        break
                out.append(sorted(comp))
    return out


def shortest_cycle_through(a, b, graph, members):
    """The shortest cycle using edge a -> b, inside the component."""
    prev = {b: None}
    q = deque([b])
    while q:
        u = q.popleft()
        if u == a:
            break
        for w in sorted(graph[u]):
            if w in members and w not in prev:
                prev[w] = u
                q.append(w)
    if a not in prev:
        return None
    path = [a]
    while path[-1] != b:
        path.append(prev[path[-1]])
    path.reverse()  # b ... a
    return [a] + path  # a -> b -> ... -> a


def find_cycles(root_dir):
    src = os.path.join(root_dir, "src")
    lib = os.path.join(src, "lib.rs")
    if not os.path.isfile(lib):
        raise SystemExit(f"check-module-cycles: no {lib}")
    files = {}
    root = Module((), lib, None)
    scan_file(lib, root, root_dir, files)
    sites = defaultdict(list)  # (a, b) -> [(line, text)]
    for a, b, line, text in edges_of(root, files):
        sites[(a, b)].append((line, text))
    graph = defaultdict(set)
    for a, b in sites:
        graph[a].add(b)
    nodes = sorted(files)
    for v in nodes:
        graph[v]
    cycles = []
    for comp in sccs(nodes, graph):
        if len(comp) < 2:
            continue
        members = set(comp)
        covered = set()
        found = []
        for a in comp:
            for b in sorted(graph[a]):
                if b not in members or (a, b) in covered:
                    continue
                cyc = shortest_cycle_through(a, b, graph, members)
                if cyc is None:
                    continue
                covered.update(zip(cyc, cyc[1:]))
                found.append(cyc)
        cycles.append((comp, found))
    rel = lambda p: os.path.relpath(p, root_dir)
    return cycles, sites, rel, len(files)


def report(root_dir, out=sys.stdout):
    cycles, sites, rel, nfiles = find_cycles(root_dir)
    if not cycles:
        print(f"check-module-cycles: {nfiles} module files, no import cycle", file=out)
        return 0
    print(f"check-module-cycles: {len(cycles)} group(s) of module files import each other in a cycle:",
          file=out)
    for comp, found in cycles:
        print("\n  " + ", ".join(rel(c) for c in comp), file=out)
        for cyc in found:
            print("    cycle: " + " -> ".join(rel(c) for c in cyc), file=out)
            for a, b in zip(cyc, cyc[1:]):
                line, text = sites[(a, b)][0]
                more = len(sites[(a, b)]) - 1
                also = f" (and {more} more)" if more else ""
                print(f"      {rel(a)}:{line} -> {rel(b)}: {text}{also}", file=out)
    print("\nBreak each cycle: move what both sides need into a module that"
          " neither imports back.", file=out)
    return 1


# ---------------------------------------------------------------- self-test

FIXTURES = {
    # A cycle through a sibling (`super::`), a `pub use` re-export and a
    # glob, plus everything that must not count as an edge.
    "cyclic": {
        "src/lib.rs": "pub mod a;\npub mod b;\npub mod m;\n",
        "src/a.rs": "use crate::b::Thing;\npub struct A;\n",
        "src/b.rs": "pub struct Thing;\npub fn f() -> super::m::Reexported { todo!() }\n",
        "src/m/mod.rs": "mod inner;\npub use crate::a::A as Reexported;\npub use inner::A2;\n",
        "src/m/inner.rs": "pub type A2 = super::Reexported;\n",
    },
    "acyclic": {
        "src/lib.rs": "pub mod p;\npub mod q;\n",
        # A parent declaring its child, the child using the parent: one way.
        "src/p/mod.rs": ("//! see [`crate::q`]\n"
                         "mod child;\npub struct P;\n"
                         "const S: &str = \"crate::q::Q\";\n"
                         "const R: &str = r#\"crate::q::Q\"#;\n"
                         "fn lt<'a>(x: &'a str) -> char { let _ = x; 'q' }\n"
                         "#[cfg(test)]\nmod tests {\n    use super::*;\n    use self::super::P as _;\n}\n"),
        "src/p/child.rs": "use super::P;\npub fn g(_: P) {}\n",
        # A module-only import: the paths through it are the edges.
        "src/q.rs": "use crate::p;\npub struct Q;\n/* crate::p::P */ pub fn h(_: p::P) {}\n",
    },
    "code_path": {
        "src/lib.rs": "pub mod x;\npub mod y;\n",
        "src/x.rs": "pub fn f() { crate::y::g() }\n",
        "src/y.rs": "use crate::x;\npub fn g() {}\npub fn k() { x::f() }\n",
    },
}


def self_test():
    failures = []
    for name, tree in FIXTURES.items():
        with tempfile.TemporaryDirectory() as d:
            for path, text in tree.items():
                full = os.path.join(d, path)
                os.makedirs(os.path.dirname(full), exist_ok=True)
                with open(full, "w", encoding="utf-8") as f:
                    f.write(text)
            SPANS.clear()
            cycles, sites, rel, _ = find_cycles(d)
            groups = [sorted(rel(c) for c in comp) for comp, _ in cycles]
            if name == "cyclic":
                want = [["src/a.rs", "src/b.rs", "src/m/mod.rs"]]
            elif name == "code_path":
                want = [["src/x.rs", "src/y.rs"]]
            else:
                want = []
            if groups != want:
                failures.append(f"{name}: expected {want}, found {groups}")
            if name == "cyclic":
                lines = {(rel(a), rel(b)): s[0][0] for (a, b), s in sites.items()}
                # The parent's paths into its own child are not edges.
                if lines.get(("src/b.rs", "src/m/mod.rs")) != 2 or lines.get(("src/m/mod.rs", "src/a.rs")) != 2 \
                        or ("src/m/mod.rs", "src/m/inner.rs") in lines:
                    failures.append(f"cyclic: wrong edge lines {lines}")
    if failures:
        print("check-module-cycles self-test FAILED:\n  " + "\n  ".join(failures))
        return 1
    print(f"check-module-cycles self-test: {len(FIXTURES)} fixtures as expected")
    return 0


def main(argv):
    if argv[1:2] == ["--self-test"]:
        return self_test()
    root_dir = argv[1] if len(argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    return report(os.path.abspath(root_dir))


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except SystemExit:
        raise
    except Exception as e:  # a bug here must not read as "no cycle"
        print(f"check-module-cycles: failed: {e!r}", file=sys.stderr)
        sys.exit(2)
