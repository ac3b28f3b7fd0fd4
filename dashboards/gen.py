#!/usr/bin/env python3
"""Generate ringwatch's Grafana dashboards; check them.

The JSON files in this directory are generated from this file, so every panel
query lives here, in one place:

    python3 dashboards/gen.py                 # (re)write the JSON files
    python3 dashboards/gen.py --check         # exit 1 if a JSON file differs
    python3 dashboards/gen.py --list-queries  # every panel query, one a line

Every run lints the queries first: each `ringwatch_*` name must be a metric
ringwatch exposes (named in a string in src/: render.rs and the self-metrics
registered beside each subsystem), each
`level:metric:operation` name a record of deploy/prometheus/
recording_rules.yml, and each dashboard variable ($queue, $site, $instance)
must sit in a `=~"..."` matcher, so that `--list-queries` can replace it with
`.*` and get a query Prometheus runs as is ($__rate_interval becomes 1m).
tests/prometheus_e2e.rs runs every listed query against a real Prometheus
scraping a real ringwatch and fails on any that returns nothing.

Python 3 standard library only. See docs/dashboards.md.
"""

import argparse
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# ---------------------------------------------------------------------------
# The contract's numbers (docs/metrics.md, config/default.toml). The bucket
# le="18.0" is 3 rings x 6 s, the default ring limit; the recording rules use it
# too (ringwatch exposes le in the float form Prometheus 3 stores, which
# Prometheus 2 keeps as exposed). Colours: red below target, amber close to it, green at or above.

SL_TARGET = 0.8  # three-ring service level target (RingwatchServiceLevelLow)
SL_GOOD = 0.85  # at or above: green; SL_TARGET..SL_GOOD: amber ("at risk")
RING_LIMIT_S = 18  # 3 rings x 6 s
HOLD_LIMIT_S = 17
COMPLIANCE_TARGET = 0.9  # callback compliance: red below, amber to ..._GOOD
COMPLIANCE_GOOD = 0.95
ABANDON_WARN = 0.05  # abandon rate (long abandons): amber from here
ABANDON_BAD = 0.1  # red from here (RingwatchAbandonRateHigh)
BREACH_WARN = 0.05  # hold breach share: amber from here
BREACH_BAD = 0.1  # red from here (RingwatchHoldBreachesTrendingUp)

# The windows of the ratios: 15 minutes like the wall's recording rules and
# the service-level alert; callback compliance over a day, because a missed
# promise only counts callback_expiry (24 h) after its due time.
RATIO_WINDOW = "15m"
COMPLIANCE_WINDOW = "1d"

# Every dashboard reads one Prometheus data source through this variable; its
# default is the uid of deploy/grafana/provisioning/datasources/prometheus.yml.
DS_UID = "prometheus"
DS = {"type": "prometheus", "uid": "${datasource}"}

# What --list-queries puts in place of each variable.
SUBSTITUTIONS = {
    "$__rate_interval": "1m",
    "$queue": ".*",
    "$site": ".*",
    "$instance": ".*",
}

FILES = {
    "ringwatch-wall.json": "wall",
    "ringwatch-supervisor.json": "supervisor",
    "ringwatch-sre.json": "sre",
}

# ---------------------------------------------------------------------------
# PromQL helpers.

CC = 'queue=~"$queue",site=~"$site"'  # call-center series of the selection
RW = 'job="ringwatch",instance=~"$instance"'  # ringwatch's own series


def sel(metric, *matchers, base=CC):
    """`metric{base,matchers...}`."""
    return "%s{%s}" % (metric, ",".join((base,) + matchers))


def inc(metric, window, *matchers, by=None, base=CC):
    """sum [by (...)] (increase(metric{...}[window]))."""
    return "%s (increase(%s[%s]))" % (agg(by), sel(metric, *matchers, base=base), window)


def rate(metric, *matchers, by=None, base=CC, window="$__rate_interval"):
    """sum [by (...)] (rate(metric{...}[window]))."""
    return "%s (rate(%s[%s]))" % (agg(by), sel(metric, *matchers, base=base), window)


def agg(by, op="sum"):
    return "%s by (%s)" % (op, by) if by else op


def quantile(q, family, by=None, base=CC, window="$__rate_interval"):
    """histogram_quantile over the buckets summed across series (sites,
    queues, instances): unlike the *_quantile_seconds gauges this aggregates."""
    le = "%s, le" % by if by else "le"
    return "histogram_quantile(%s, %s)" % (
        q,
        rate(family + "_bucket", by=le, base=base, window=window),
    )


def service_level(window):
    """Three-ring service level of the selection: answered within 18 s /
    (answered + long abandons); short abandons are left out."""
    return "%s / (%s + %s)" % (
        inc("ringwatch_time_to_answer_seconds_bucket", window, 'le="%d.0"' % RING_LIMIT_S),
        inc("ringwatch_calls_answered_total", window),
        inc("ringwatch_calls_abandoned_total", window, 'short="false"'),
    )


def service_level_within_limit(window):
    """The same against each queue's own ring limit (answered - answered late)."""
    return "(%s - %s) / (%s + %s)" % (
        inc("ringwatch_calls_answered_total", window),
        inc("ringwatch_calls_answered_late_total", window),
        inc("ringwatch_calls_answered_total", window),
        inc("ringwatch_calls_abandoned_total", window, 'short="false"'),
    )


def abandon_rate(window):
    return "%s / (%s + %s)" % (
        inc("ringwatch_calls_abandoned_total", window, 'short="false"'),
        inc("ringwatch_calls_answered_total", window),
        inc("ringwatch_calls_abandoned_total", window, 'short="false"'),
    )


def hold_breach_rate(window):
    return "%s / %s" % (
        inc("ringwatch_hold_limit_exceeded_total", window),
        inc("ringwatch_holds_total", window),
    )


def compliance(window):
    return "%s / %s" % (
        inc("ringwatch_callbacks_resolved_total", window, 'outcome="kept"'),
        inc("ringwatch_callbacks_resolved_total", window, 'outcome=~"kept|late|missed"'),
    )


def per_minute(expr):
    return "%s * 60" % expr


def per_hour(expr):
    return "%s * 3600" % expr


def recorded(name):
    """A per-queue recorded series of recording_rules.yml (sites and
    instances summed), for the selected queues."""
    return '%s{queue=~"$queue"}' % name


# ---------------------------------------------------------------------------
# Panel builders. Grafana 11 (schemaVersion 39) models.


def target(expr, legend="__auto", ref="A", instant=False, fmt=None):
    t = {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": ref}
    if instant:
        t["instant"] = True
        t["range"] = False
    else:
        t["range"] = True
    if fmt:
        t["format"] = fmt
    return t


def targets(*pairs, **kw):
    """[(expr, legend), ...] -> targets with refIds A, B, C..."""
    return [target(e, l, chr(ord("A") + i), **kw) for i, (e, l) in enumerate(pairs)]


def steps(*pairs):
    """Threshold steps: (color, from) pairs; the first starts at -inf."""
    out = []
    for i, (color, value) in enumerate(pairs):
        out.append({"color": color, "value": None if i == 0 else value})
    return {"mode": "absolute", "steps": out}


NEUTRAL = steps(("blue", None))
ZERO_GOOD = steps(("green", None), ("red", 1))  # any count above 0 is red


def nan_as(text):
    """Value mappings: a ratio's NaN (nothing in the window) reads `text`."""
    return [
        {"type": "special", "options": {"match": "nan", "result": {"text": text, "color": "text", "index": 0}}},
        {"type": "special", "options": {"match": "null", "result": {"text": "no data", "color": "text", "index": 1}}},
    ]


NAN_NO_CALLS = nan_as("no calls")
SL_STEPS = steps(("red", None), ("orange", SL_TARGET), ("green", SL_GOOD))
COMPLIANCE_STEPS = steps(("red", None), ("orange", COMPLIANCE_TARGET), ("green", COMPLIANCE_GOOD))
WAIT_STEPS = steps(("green", None), ("orange", RING_LIMIT_S * 2 / 3), ("red", RING_LIMIT_S))
HOLD_STEPS = steps(("green", None), ("orange", HOLD_LIMIT_S * 2 / 3), ("red", HOLD_LIMIT_S))
ABANDON_STEPS = steps(("green", None), ("orange", ABANDON_WARN), ("red", ABANDON_BAD))
BREACH_STEPS = steps(("green", None), ("orange", BREACH_WARN), ("red", BREACH_BAD))


class Layout:
    """Hands out panel ids and grid positions, left to right, top to bottom."""

    def __init__(self):
        self.panels = []
        self.x = 0
        self.y = 0
        self.row_h = 0

    def add(self, panel, w, h):
        if self.x + w > 24:
            self.newline()
        panel["id"] = len(self.panels) + 1
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.panels.append(panel)
        self.x += w
        self.row_h = max(self.row_h, h)
        return panel

    def newline(self):
        self.y += self.row_h
        self.x = 0
        self.row_h = 0

    def row(self, title):
        if self.x:
            self.newline()
        self.add(
            {"type": "row", "title": title, "collapsed": False, "panels": []},
            24,
            1,
        )
        self.newline()


def stat(title, expr, unit, thresholds, description, decimals=None, legend="__auto",
         mappings=None, minmax=None, text_mode="value", color_mode="background"):
    defaults = {
        "color": {"mode": "thresholds"},
        "mappings": mappings or [],
        "thresholds": thresholds,
        "unit": unit,
    }
    if decimals is not None:
        defaults["decimals"] = decimals
    if minmax:
        defaults["min"], defaults["max"] = minmax
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DS,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "colorMode": color_mode,
            "graphMode": "none",
            "justifyMode": "center",
            "orientation": "auto",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "showPercentChange": False,
            "textMode": text_mode,
            "wideLayout": True,
        },
        "targets": [target(expr, legend, instant=True)],
    }


def timeseries(title, tgts, unit, description, thresholds=None, minmax=None,
               stack=False, bars=False, legend_calcs=None, overrides=None):
    custom = {
        "drawStyle": "bars" if bars else "line",
        "fillOpacity": 60 if bars else 10,
        "lineWidth": 2,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"group": "A", "mode": "normal" if stack else "none"},
        "thresholdsStyle": {"mode": "dashed" if thresholds else "off"},
    }
    defaults = {
        "color": {"mode": "palette-classic"},
        "custom": custom,
        "thresholds": thresholds or steps(("green", None)),
        "unit": unit,
    }
    if minmax:
        lo, hi = minmax
        if lo is not None:
            defaults["min"] = lo
        if hi is not None:
            defaults["max"] = hi
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DS,
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": {
            "legend": {
                "calcs": legend_calcs or [],
                "displayMode": "table" if legend_calcs else "list",
                "placement": "bottom",
                "showLegend": True,
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": tgts,
    }


def table(title, description, columns, first_column, links=None):
    """One row per `first_column` label value, one column per
    (header, expr, unit, thresholds) instant query, merged."""
    tgts = []
    rename = {first_column: first_column.capitalize()}
    index = {first_column: 0}
    exclude = {"Time": True}
    overrides = []
    for i, (header, expr, unit, thr) in enumerate(columns):
        ref = chr(ord("A") + i)
        tgts.append(target(expr, "", ref, instant=True, fmt="table"))
        rename["Value #" + ref] = header
        index["Value #" + ref] = i + 1
        props = [{"id": "unit", "value": unit}]
        if thr is not None:
            props.append({"id": "thresholds", "value": thr})
            props.append({"id": "custom.cellOptions", "value": {"type": "color-background", "mode": "basic"}})
        if unit == "percentunit":
            props.append({"id": "decimals", "value": 1})
        overrides.append({"matcher": {"id": "byName", "options": header}, "properties": props})
    if links:
        overrides.append({
            "matcher": {"id": "byName", "options": rename[first_column]},
            "properties": [{"id": "links", "value": links}],
        })
    return {
        "type": "table",
        "title": title,
        "description": description,
        "datasource": DS,
        "fieldConfig": {
            "defaults": {
                "custom": {"align": "auto", "cellOptions": {"type": "auto"}, "filterable": False},
                "mappings": nan_as("-"),
                "thresholds": steps(("green", None)),
            },
            "overrides": overrides,
        },
        "options": {
            "cellHeight": "md",
            "footer": {"show": False, "reducer": ["sum"], "fields": "", "countRows": False},
            "showHeader": True,
            "sortBy": [{"displayName": rename[first_column], "desc": False}],
        },
        "targets": tgts,
        "transformations": [
            {"id": "merge", "options": {}},
            {"id": "organize", "options": {"excludeByName": exclude, "indexByName": index, "renameByName": rename}},
        ],
    }


def heatmap(title, expr, description):
    return {
        "type": "heatmap",
        "title": title,
        "description": description,
        "datasource": DS,
        "fieldConfig": {"defaults": {"custom": {"hideFrom": {"legend": False, "tooltip": False, "viz": False},
                                                "scaleDistribution": {"type": "linear"}}},
                        "overrides": []},
        "options": {
            "calculate": False,
            "cellGap": 1,
            "cellValues": {"unit": "short"},
            "color": {"exponent": 0.5, "fill": "dark-orange", "mode": "scheme", "reverse": False,
                      "scale": "exponential", "scheme": "Oranges", "steps": 64},
            "exemplars": {"color": "rgba(255,0,255,0.7)"},
            "filterValues": {"le": 1e-9},
            "legend": {"show": True},
            "rowsFrame": {"layout": "le"},
            "tooltip": {"mode": "single", "showColorScale": False, "yHistogram": True},
            "yAxis": {"axisPlacement": "left", "reverse": False, "unit": "s"},
        },
        "targets": [target(expr, "{{le}}", fmt="heatmap")],
    }


# ---------------------------------------------------------------------------
# Variables and the dashboard envelope.


def ds_variable():
    return {
        "type": "datasource",
        "name": "datasource",
        "label": "Data source",
        "query": "prometheus",
        "current": {"selected": False, "text": "Prometheus", "value": DS_UID},
        "hide": 0,
        "includeAll": False,
        "multi": False,
        "options": [],
        "refresh": 1,
        "regex": "",
        "skipUrlSync": False,
    }


def query_variable(name, label, query, multi=True, include_all=True):
    v = {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": DS,
        "definition": query,
        "query": query,
        "refresh": 2,  # on time range change: new queues and sites appear
        "regex": "",
        "sort": 1,
        "hide": 0,
        "multi": multi,
        "includeAll": include_all,
        "options": [],
        "skipUrlSync": False,
    }
    if include_all:
        # `.*` rather than Grafana's (a|b|c): it also matches series without
        # the label, e.g. queues whose events carry no site.
        v["allValue"] = ".*"
        v["current"] = {"selected": True, "text": ["All"], "value": ["$__all"]}
    else:
        v["current"] = {}
    return v


def queue_variable(multi=True):
    return query_variable(
        "queue", "Queue", "label_values(ringwatch_calls_offered_total, queue)",
        multi=multi, include_all=multi,
    )


def site_variable():
    return query_variable(
        "site", "Site", 'label_values(ringwatch_calls_offered_total{queue=~"$queue"}, site)'
    )


def dashboard(uid, title, description, layout, variables, refresh, time_from, tags):
    return {
        "annotations": {"list": [{
            "builtIn": 1,
            "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": True,
            "hide": True,
            "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts",
            "type": "dashboard",
        }]},
        "description": description,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [{
            "asDropdown": False,
            "icon": "external link",
            "includeVars": False,
            "keepTime": True,
            "tags": ["ringwatch"],
            "targetBlank": False,
            "title": "ringwatch",
            "type": "dashboards",
        }],
        "panels": layout.panels,
        "refresh": refresh,
        "schemaVersion": 39,
        "tags": ["ringwatch"] + tags,
        "templating": {"list": [ds_variable()] + variables},
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "timezone": "",
        "title": title,
        "uid": uid,
        "version": 1,
        "weekStart": "",
    }


# ---------------------------------------------------------------------------
# The ops wall.

ALL_SITES = " Sites summed (recording rules of deploy/prometheus/recording_rules.yml); the site filter does not apply."


def wall():
    L = Layout()
    L.row("Right now")
    L.add(stat(
        "Three-ring service level (15 min)", service_level(RATIO_WINDOW), "percentunit", SL_STEPS,
        "Callers answered within three rings (18 s) over the last 15 minutes, out of answered plus "
        "callers who hung up after 5 s or more. Target %d%%: red below it, amber under %d%%."
        % (SL_TARGET * 100, SL_GOOD * 100),
        decimals=1, mappings=NAN_NO_CALLS, minmax=(0, 1)), 6, 7)
    L.add(stat(
        "Callers waiting now", "sum(%s)" % sel("ringwatch_calls_waiting"), "short", NEUTRAL,
        "Calls offered and not yet answered or ended.", decimals=0), 3, 7)
    L.add(stat(
        "Ringing past 3 rings", "sum(%s)" % sel("ringwatch_calls_waiting_over_limit"), "short", ZERO_GOOD,
        "Callers waiting strictly longer than three rings (18 s) right now.", decimals=0), 3, 7)
    L.add(stat(
        "Oldest wait", "max(%s)" % sel("ringwatch_oldest_wait_seconds"), "s", WAIT_STEPS,
        "Longest current wait (0 when nobody waits). Red from %d s (three rings)." % RING_LIMIT_S,
        decimals=0), 3, 7)
    L.add(stat(
        "On hold now", "sum(%s)" % sel("ringwatch_calls_on_hold"), "short", NEUTRAL,
        "Callers on hold right now.", decimals=0), 3, 7)
    L.add(stat(
        "On hold over 17 s", "sum(%s)" % sel("ringwatch_calls_on_hold_over_limit"), "short", ZERO_GOOD,
        "Callers on hold right now for strictly longer than %d s." % HOLD_LIMIT_S, decimals=0), 3, 7)
    L.add(stat(
        "Callbacks overdue", "sum(%s)" % sel("ringwatch_callbacks_overdue"), "short", ZERO_GOOD,
        "Promised callbacks past their due time and not made yet.", decimals=0), 3, 7)
    L.newline()
    L.add(stat(
        "Callback compliance (24 h)", compliance(COMPLIANCE_WINDOW), "percentunit", COMPLIANCE_STEPS,
        "Promises kept / (kept + late + missed) that got their outcome in the last 24 hours; cancelled "
        "ones are left out. A promise is missed only 24 h after its due time, so a shorter window "
        "would hide misses.", decimals=1, mappings=nan_as("no promises"), minmax=(0, 1)), 6, 5)
    L.add(stat(
        "Abandon rate (15 min)", abandon_rate(RATIO_WINDOW), "percentunit", ABANDON_STEPS,
        "Callers who hung up after waiting 5 s or more / (answered + those).",
        decimals=1, mappings=NAN_NO_CALLS, minmax=(0, 1)), 6, 5)
    L.add(stat(
        "Hold breaches (15 min)", hold_breach_rate(RATIO_WINDOW), "percentunit", BREACH_STEPS,
        "Share of the hold segments ended in the last 15 minutes that lasted longer than %d s." % HOLD_LIMIT_S,
        decimals=1, mappings=nan_as("no holds"), minmax=(0, 1)), 6, 5)
    L.add(stat(
        "Calls offered (15 min)", inc("ringwatch_calls_offered_total", RATIO_WINDOW), "short", NEUTRAL,
        "Calls that reached the selected queues in the last 15 minutes.", decimals=0), 6, 5)

    L.row("Per queue")
    L.add(table(
        "Queues (all sites)",
        "One row per queue; click a queue for its supervisor view." + ALL_SITES,
        [
            ("Waiting", recorded("queue:ringwatch_calls_waiting:sum"), "short", None),
            ("Past 3 rings", recorded("queue:ringwatch_calls_waiting_over_limit:sum"), "short", ZERO_GOOD),
            ("Oldest wait", recorded("queue:ringwatch_oldest_wait_seconds:max"), "s", WAIT_STEPS),
            ("On hold", recorded("queue:ringwatch_calls_on_hold:sum"), "short", None),
            ("Hold > 17 s", recorded("queue:ringwatch_calls_on_hold_over_limit:sum"), "short", ZERO_GOOD),
            ("Longest hold", recorded("queue:ringwatch_longest_hold_seconds:max"), "s", HOLD_STEPS),
            ("Callbacks overdue", recorded("queue:ringwatch_callbacks_overdue:sum"), "short", ZERO_GOOD),
            ("Service level 15m", recorded("queue:ringwatch_service_level_three_rings:ratio_15m"), "percentunit", SL_STEPS),
            ("Abandon 15m", recorded("queue:ringwatch_abandon_rate:ratio_15m"), "percentunit", ABANDON_STEPS),
            ("Hold breaches 15m", recorded("queue:ringwatch_hold_limit_breach:ratio_15m"), "percentunit", BREACH_STEPS),
            ("p90 answer 15m", recorded("queue:ringwatch_time_to_answer_seconds:p90_15m"), "s", WAIT_STEPS),
        ],
        "queue",
        links=[{
            "title": "Supervisor view of ${__value.raw}",
            "url": "/d/ringwatch-supervisor/ringwatch-supervisor?var-queue=${__value.raw}&${site:queryparam}&${__url_time_range}",
        }],
    ), 24, 8)

    L.row("Trends")
    L.add(heatmap(
        "Time to answer",
        inc("ringwatch_time_to_answer_seconds_bucket", "$__rate_interval", by="le"),
        "How long answered callers waited: calls per ring bucket (6 s wide up to 60 s) and interval. "
        "Everything above the 18 s row broke the three-ring rule.",
    ), 12, 9)
    L.add(timeseries(
        "Service level (15 min, all sites)",
        targets((recorded("queue:ringwatch_service_level_three_rings:ratio_15m"), "{{queue}}")),
        "percentunit",
        "Three-ring service level per queue; dashed line: the %d%% target." % (SL_TARGET * 100) + ALL_SITES,
        thresholds=steps(("red", None), ("green", SL_TARGET)), minmax=(0, 1)), 12, 9)
    L.add(timeseries(
        "Abandon rate (15 min, all sites)",
        targets((recorded("queue:ringwatch_abandon_rate:ratio_15m"), "{{queue}}")),
        "percentunit",
        "Long abandons / (answered + long abandons) per queue." + ALL_SITES,
        thresholds=steps(("green", None), ("red", ABANDON_BAD)), minmax=(0, None)), 12, 8)
    L.add(timeseries(
        "Hold breaches (15 min, all sites)",
        targets((recorded("queue:ringwatch_hold_limit_breach:ratio_15m"), "{{queue}}")),
        "percentunit",
        "Share of hold segments longer than %d s per queue." % HOLD_LIMIT_S + ALL_SITES,
        thresholds=steps(("green", None), ("red", BREACH_BAD)), minmax=(0, None)), 12, 8)
    return dashboard(
        "ringwatch-wall", "ringwatch / Ops wall",
        "The live wall: three rings, 17 seconds on hold, callbacks when promised.",
        L, [queue_variable(), site_variable()], "10s", "now-3h", ["wall"],
    )


# ---------------------------------------------------------------------------
# The supervisor's drill-down for one queue.


def supervisor():
    L = Layout()
    L.row("Right now")
    now = [
        ("Waiting", "sum(%s)" % sel("ringwatch_calls_waiting"), "short", NEUTRAL, "Callers waiting for an answer."),
        ("Past 3 rings", "sum(%s)" % sel("ringwatch_calls_waiting_over_limit"), "short", ZERO_GOOD,
         "Callers waiting longer than three rings (18 s)."),
        ("Oldest wait", "max(%s)" % sel("ringwatch_oldest_wait_seconds"), "s", WAIT_STEPS, "Longest current wait."),
        ("On hold", "sum(%s)" % sel("ringwatch_calls_on_hold"), "short", NEUTRAL, "Callers on hold."),
        ("Hold > 17 s", "sum(%s)" % sel("ringwatch_calls_on_hold_over_limit"), "short", ZERO_GOOD,
         "Callers on hold for longer than 17 s."),
        ("Longest hold", "max(%s)" % sel("ringwatch_longest_hold_seconds"), "s", HOLD_STEPS, "Longest current hold."),
        ("Callbacks pending", "sum(%s)" % sel("ringwatch_callbacks_pending"), "short", NEUTRAL,
         "Promises without an outcome yet."),
        ("Callbacks overdue", "sum(%s)" % sel("ringwatch_callbacks_overdue"), "short", ZERO_GOOD,
         "Pending promises past their due time."),
    ]
    for title, expr, unit, thr, desc in now:
        L.add(stat(title, expr, unit, thr, desc, decimals=0), 3, 5)

    L.row("Waiting and hold")
    L.add(timeseries(
        "Waiting and past three rings",
        targets(("sum(%s)" % sel("ringwatch_calls_waiting"), "waiting"),
                ("sum(%s)" % sel("ringwatch_calls_waiting_over_limit"), "past 3 rings")),
        "short", "Callers waiting, and of those ringing past 18 s.", minmax=(0, None)), 8, 8)
    L.add(timeseries(
        "On hold and over 17 s",
        targets(("sum(%s)" % sel("ringwatch_calls_on_hold"), "on hold"),
                ("sum(%s)" % sel("ringwatch_calls_on_hold_over_limit"), "over 17 s")),
        "short", "Callers on hold, and of those on hold for longer than 17 s.", minmax=(0, None)), 8, 8)
    L.add(timeseries(
        "Oldest wait and longest hold",
        targets(("max(%s)" % sel("ringwatch_oldest_wait_seconds"), "oldest wait"),
                ("max(%s)" % sel("ringwatch_longest_hold_seconds"), "longest hold")),
        "s", "Current longest wait and hold; dashed lines at 17 s and 18 s.",
        thresholds=steps(("green", None), ("orange", HOLD_LIMIT_S), ("red", RING_LIMIT_S)),
        minmax=(0, None)), 8, 8)

    L.row("Answering")
    L.add(timeseries(
        "Calls per minute",
        targets((per_minute(rate("ringwatch_calls_offered_total")), "offered"),
                (per_minute(rate("ringwatch_calls_answered_total")), "answered"),
                (per_minute(rate("ringwatch_calls_answered_late_total")), "answered past 3 rings"),
                (per_minute(rate("ringwatch_calls_abandoned_total", 'short="false"')), "abandoned"),
                (per_minute(rate("ringwatch_calls_abandoned_total", 'short="true"')), "abandoned within 5 s")),
        "cpm", "Offered, answered (and of those past three rings) and abandoned calls per minute.",
        minmax=(0, None)), 12, 8)
    L.add(timeseries(
        "Time to answer p50 / p90 (15 min)",
        targets((quantile(0.5, "ringwatch_time_to_answer_seconds", window=RATIO_WINDOW), "p50"),
                (quantile(0.9, "ringwatch_time_to_answer_seconds", window=RATIO_WINDOW), "p90"),
                ("%s / %s" % (rate("ringwatch_time_to_answer_seconds_sum", window=RATIO_WINDOW),
                              rate("ringwatch_time_to_answer_seconds_count", window=RATIO_WINDOW)), "average")),
        "s",
        "histogram_quantile over the time-to-answer buckets summed across sites and instances, "
        "interpolated inside the 6 s ring buckets (exact only at ring boundaries). The "
        "*_quantile_seconds gauges are not used: they cannot be added up. Dashed line: 18 s.",
        thresholds=steps(("green", None), ("red", RING_LIMIT_S)), minmax=(0, None)), 12, 8)
    L.add(timeseries(
        "Service level and abandon rate (15 min)",
        targets((service_level(RATIO_WINDOW), "three-ring service level"),
                (service_level_within_limit(RATIO_WINDOW), "service level, queue's own ring limit"),
                (abandon_rate(RATIO_WINDOW), "abandon rate")),
        "percentunit",
        "Answered within 18 s, and within the queue's own ring limit, / (answered + abandoned after "
        "5 s or more); abandon rate on the same base. Dashed line: the 80% target.",
        thresholds=steps(("red", None), ("green", SL_TARGET)), minmax=(0, 1)), 12, 8)
    L.add(timeseries(
        "Abandon wait p50 / p90 (15 min)",
        targets((quantile(0.5, "ringwatch_abandon_wait_seconds", window=RATIO_WINDOW), "p50"),
                (quantile(0.9, "ringwatch_abandon_wait_seconds", window=RATIO_WINDOW), "p90")),
        "s", "How long callers who hung up had waited.", minmax=(0, None)), 12, 8)

    L.row("Holds")
    L.add(timeseries(
        "Hold breach rate (15 min)",
        targets((hold_breach_rate(RATIO_WINDOW), "longer than 17 s")),
        "percentunit", "Share of the hold segments ended in the window that lasted longer than 17 s.",
        thresholds=steps(("green", None), ("red", BREACH_BAD)), minmax=(0, None)), 8, 8)
    L.add(timeseries(
        "Holds per minute",
        targets((per_minute(rate("ringwatch_holds_total")), "holds ended"),
                (per_minute(rate("ringwatch_hold_limit_exceeded_total")), "longer than 17 s")),
        "cpm", "Hold segments ended, and of those longer than 17 s.", minmax=(0, None)), 8, 8)
    L.add(timeseries(
        "Hold duration p50 / p90 (15 min)",
        targets((quantile(0.5, "ringwatch_hold_duration_seconds", window=RATIO_WINDOW), "p50"),
                (quantile(0.9, "ringwatch_hold_duration_seconds", window=RATIO_WINDOW), "p90")),
        "s", "From the hold-duration buckets summed across sites and instances. Dashed line: 17 s.",
        thresholds=steps(("green", None), ("red", HOLD_LIMIT_S)), minmax=(0, None)), 8, 8)

    L.row("Callbacks")
    L.add(timeseries(
        "Callbacks pending and overdue",
        targets(("sum(%s)" % sel("ringwatch_callbacks_pending"), "pending"),
                ("sum(%s)" % sel("ringwatch_callbacks_overdue"), "overdue")),
        "short", "Promises without an outcome, and of those past their due time.", minmax=(0, None)), 8, 8)
    L.add(timeseries(
        "Callback outcomes per hour",
        targets((per_hour(rate("ringwatch_callbacks_promised_total")), "promised"),
                (per_hour(rate("ringwatch_callbacks_resolved_total", by="outcome")), "{{outcome}}")),
        "suffix:/h", "Promises made and outcomes reached (kept, late, missed, cancelled), per hour.",
        minmax=(0, None)), 8, 8)
    L.add(timeseries(
        "Callback compliance (24 h)",
        targets((compliance(COMPLIANCE_WINDOW), "compliance"),),
        "percentunit",
        "Kept / (kept + late + missed) over 24 h; cancelled promises are left out, and a promise "
        "becomes missed only 24 h after its due time.",
        thresholds=steps(("red", None), ("green", COMPLIANCE_TARGET)), minmax=(0, 1)), 8, 8)
    L.add(timeseries(
        "Late callbacks: lateness p50 / p90 (24 h)",
        targets((quantile(0.5, "ringwatch_callback_lateness_seconds", window=COMPLIANCE_WINDOW), "p50"),
                (quantile(0.9, "ringwatch_callback_lateness_seconds", window=COMPLIANCE_WINDOW), "p90")),
        "s", "How late the late callbacks came (completed minus due).", minmax=(0, None)), 24, 7)
    return dashboard(
        "ringwatch-supervisor", "ringwatch / Supervisor",
        "One queue in detail: waits, holds, answering, abandons and callbacks.",
        L, [queue_variable(multi=False), site_variable()], "30s", "now-6h", ["supervisor"],
    )


# ---------------------------------------------------------------------------
# The SRE view: ringwatch itself.


def sre():
    L = Layout()
    L.row("Health")
    up_mappings = [{"type": "value", "options": {
        "0": {"text": "DOWN", "color": "red", "index": 0},
        "1": {"text": "UP", "color": "green", "index": 1},
    }}]
    L.add(stat("Up", "up{%s}" % RW, "none", steps(("red", None), ("green", 1)),
               "Whether Prometheus' last scrape of each ringwatch target succeeded (alert RingwatchDown).",
               legend="{{instance}}", mappings=up_mappings), 6, 5)
    L.add(stat("Version", "ringwatch_build_info{%s}" % RW, "none", NEUTRAL,
               "Version and source revision of each instance.",
               legend="{{instance}}: {{version}} ({{revision}})", text_mode="name", color_mode="none"), 6, 5)
    L.add(stat("Ingest connections", "sum(ringwatch_ingest_connections{%s})" % RW, "short", NEUTRAL,
               "Open ingest WebSocket connections (event sources).", decimals=0), 4, 5)
    L.add(stat("Alerts firing", "sum(ringwatch_alerts_active{%s})" % RW, "short", ZERO_GOOD,
               "Supervisor alerts ringwatch itself is sending to Alertmanager now (0 unless "
               "alerts.alertmanager_url is set).", decimals=0), 4, 5)
    L.add(stat("Events rejected (10 min)",
               "%s / (%s + %s)" % (rate("ringwatch_events_rejected_total", base=RW, window="10m"),
                                   rate("ringwatch_events_rejected_total", base=RW, window="10m"),
                                   rate("ringwatch_events_received_total", base=RW, window="10m")),
               "percentunit", steps(("green", None), ("orange", 0.01), ("red", 0.05)),
               "Rejected / (rejected + applied) events (alert RingwatchEventsRejectedHigh above 5%).",
               decimals=2, mappings=nan_as("no events")), 4, 5)

    L.row("Events")
    L.add(timeseries(
        "Events applied by type",
        targets((rate("ringwatch_events_received_total", by="type", base=RW), "{{type}}")),
        "ops", "Events accepted and applied per second, by type.", stack=True, minmax=(0, None)), 12, 8)
    L.add(timeseries(
        "Events rejected by reason",
        targets((rate("ringwatch_events_rejected_total", by="reason", base=RW), "{{reason}}")),
        "ops", "Events not applied per second, by reason (docs/events.md#bad-input).",
        stack=True, minmax=(0, None)), 12, 8)
    L.add(timeseries(
        "Duplicates and folded labels",
        targets((rate("ringwatch_events_duplicate_total", base=RW), "duplicates"),
                (rate("ringwatch_label_values_folded_total", by="label", base=RW), "folded {{label}}")),
        "ops", "Resent events dropped as duplicates (normal after a reconnect), and events whose queue, "
        "site or agent was reported as `other` (max_queues / max_sites / max_agents reached).",
        minmax=(0, None)), 12, 8)
    L.add(timeseries(
        "Event lag p50 / p99",
        targets((quantile(0.5, "ringwatch_event_lag_seconds", by="instance", base=RW), "p50 {{instance}}"),
                (quantile(0.99, "ringwatch_event_lag_seconds", by="instance", base=RW), "p99 {{instance}}")),
        "s", "Arrival time minus the event's ts: how far behind the sources are (meaningless when "
        "replaying old events with clock = \"event\").", minmax=(0, None)), 12, 8)

    L.row("Ingest")
    L.add(timeseries(
        "Connections",
        targets(("sum by (instance) (ringwatch_ingest_connections{%s})" % RW, "open {{instance}}"),
                (per_minute(rate("ringwatch_ingest_connections_opened_total", base=RW)), "opened /min"),
                (per_minute(rate("ringwatch_ingest_connections_closed_total", by="reason", base=RW)),
                 "closed /min ({{reason}})")),
        "short", "Open ingest connections per instance; connections opened and closed per minute, by "
        "close reason.", minmax=(0, None)), 8, 8)
    L.add(timeseries(
        "Frames per second",
        targets((rate("ringwatch_ingest_frames_total", by="instance", base=RW), "{{instance}}")),
        "ops", "Text frames received (each one is acknowledged).", minmax=(0, None)), 8, 8)
    L.add(timeseries(
        "Frame bytes per second",
        targets((rate("ringwatch_ingest_frame_bytes_total", by="instance", base=RW), "{{instance}}")),
        "Bps", "Bytes of text frames received.", minmax=(0, None)), 8, 8)
    L.add(timeseries(
        "Protocol errors by kind",
        targets((per_minute(rate("ringwatch_ingest_protocol_errors_total", by="kind", base=RW)), "{{kind}}")),
        "cpm", "WebSocket protocol errors that closed a connection or refused an upgrade, per minute "
        "(alert RingwatchIngestProtocolErrors).", minmax=(0, None)), 8, 8)
    L.add(timeseries(
        "Frame duration p50 / p99",
        targets((quantile(0.5, "ringwatch_ingest_frame_duration_seconds", by="instance", base=RW), "p50 {{instance}}"),
                (quantile(0.99, "ringwatch_ingest_frame_duration_seconds", by="instance", base=RW), "p99 {{instance}}")),
        "s", "Time from receiving a frame to sending its acknowledgement.", minmax=(0, None)), 8, 8)
    L.add(timeseries(
        "Scrape duration p99",
        targets((quantile(0.99, "ringwatch_scrape_duration_seconds", by="instance", base=RW), "{{instance}}"),
                ("scrape_duration_seconds{%s}" % RW, "seen by Prometheus {{instance}}")),
        "s", "Time to produce one /metrics response, as measured by ringwatch and by Prometheus.",
        minmax=(0, None)), 8, 8)

    L.row("Engine")
    L.add(timeseries(
        "Calls in flight",
        targets(("sum by (instance) (ringwatch_calls_in_flight{%s})" % RW, "{{instance}}")),
        "short", "Calls held in memory (waiting or active); bounded by rules.max_calls.",
        minmax=(0, None)), 6, 8)
    L.add(timeseries(
        "Remembered event ids",
        targets(("sum by (instance) (ringwatch_dedup_ids{%s})" % RW, "{{instance}}")),
        "short", "event_ids remembered for de-duplication; bounded by rules.dedup_max_ids.",
        minmax=(0, None)), 6, 8)
    L.add(timeseries(
        "Calls evicted per hour",
        targets((per_hour(rate("ringwatch_calls_evicted_total", by="instance", base=RW)), "{{instance}}")),
        "suffix:/h", "Calls dropped after call_ttl without an event: a source is losing events "
        "(alert RingwatchCallsEvicted).", minmax=(0, None)), 6, 8)
    L.add(timeseries(
        "Monitor clock behind wall clock",
        targets(("time() - ringwatch_clock_seconds{%s}" % RW, "{{instance}}")),
        "s", "Wall clock minus the monitor's clock. About 0 with clock = \"wall\"; with clock = "
        "\"event\" it shows how far behind real time the events are.", minmax=(None, None)), 6, 8)

    L.row("Durability")
    L.add(timeseries(
        "Journal written",
        targets((rate("ringwatch_journal_written_bytes_total", by="instance", base=RW), "{{instance}}")),
        "Bps", "Bytes appended to the journal per second: every frame, plus the timer, scrapes and alert "
        "checks. While snapshots succeed the journal holds about two snapshot intervals of this "
        "(docs/durability.md).", minmax=(0, None)), 6, 8)
    L.add(timeseries(
        "Journal fsync p50 / p99",
        targets((quantile(0.5, "ringwatch_journal_fsync_duration_seconds", by="instance", base=RW), "p50 {{instance}}"),
                (quantile(0.99, "ringwatch_journal_fsync_duration_seconds", by="instance", base=RW), "p99 {{instance}}")),
        "s", "Time of one fsync of the journal. With fsync = \"batch\" every acknowledgement waits for "
        "one; with \"interval\" they run in the background every fsync_interval. Slow fsyncs come "
        "before a failing or stalled disk.", minmax=(0, None)), 6, 8)
    L.add(timeseries(
        "Journal and snapshot errors",
        targets((per_minute(rate("ringwatch_journal_errors_total", by="instance, op", base=RW)), "journal {{op}} {{instance}}"),
                (per_minute(rate("ringwatch_snapshot_failures_total", by="instance", base=RW)), "snapshot {{instance}}")),
        "cpm", "Failed journal writes (frames not acknowledged, connections closed with 1011) and "
        "fsyncs, and failed snapshots, per minute (alerts RingwatchJournalErrors, "
        "RingwatchSnapshotsFailing). Should be 0.", minmax=(0, None)), 6, 8)
    L.add(timeseries(
        "Snapshot age",
        targets(("time() - max by (instance) (ringwatch_snapshot_last_success_timestamp_seconds{%s} > 0)" % RW,
                 "{{instance}}"),),
        "s", "Time since the last snapshot was written; it drops back every durability.snapshot_interval "
        "(60 s). No value from a start until its first snapshot, nor with durability off. Dashed line: "
        "10 minutes (alert RingwatchSnapshotStale).",
        thresholds=steps(("green", None), ("red", 600)), minmax=(0, None)), 6, 8)
    L.add(timeseries(
        "Snapshot duration p99",
        targets((quantile(0.99, "ringwatch_snapshot_encode_duration_seconds", by="instance", base=RW, window="15m"),
                 "encode (ingest waits) {{instance}}"),
                (quantile(0.99, "ringwatch_snapshot_write_duration_seconds", by="instance", base=RW, window="15m"),
                 "write + sync {{instance}}")),
        "s", "Over 15 minutes: encoding the state, which holds up ingest, and writing and syncing the "
        "file in the background.", minmax=(0, None)), 8, 8)
    L.add(timeseries(
        "Snapshot size",
        targets(("max by (instance) (ringwatch_snapshot_size_bytes{%s})" % RW, "{{instance}}"),),
        "bytes", "Size of the last snapshot: grows with calls in flight, pending promises and remembered "
        "event ids.", minmax=(0, None)), 8, 8)
    L.add(table(
        "Last start: recovery",
        "What each instance's last start recovered from its data directory (the log line `state "
        "recovered` has the same). Bytes cut or unusable snapshots mean the process before did not "
        "stop gracefully (alert RingwatchJournalTailCut) or the disk is damaged.",
        [
            ("Took", "max by (instance) (ringwatch_recovery_duration_seconds{%s})" % RW, "s", None),
            ("Records replayed", "max by (instance) (ringwatch_recovery_replayed_records{%s})" % RW, "short", None),
            ("Bytes cut", "max by (instance) (ringwatch_recovery_cut_bytes{%s})" % RW, "bytes", ZERO_GOOD),
            ("Unusable snapshots", "max by (instance) (ringwatch_recovery_unusable_snapshots{%s})" % RW, "short",
             ZERO_GOOD),
        ],
        "instance"), 8, 8)

    L.row("Client-mode sources")
    L.add(table(
        "Sources",
        "One row per client-mode source ([sources.NAME]) and instance: connected now, age of its last "
        "event frame (empty until the first), reconnects and failed connection attempts over the last "
        "hour (alerts RingwatchSourceDisconnected, RingwatchSourceFlapping).",
        [
            ("Connected", "max by (instance, source) (ringwatch_source_connected{%s})" % RW, "short",
             steps(("red", None), ("green", 1))),
            ("Last event age",
             "time() - max by (instance, source) (ringwatch_source_last_event_timestamp_seconds{%s} > 0)" % RW,
             "s", None),
            ("Reconnects (1 h)", inc("ringwatch_source_reconnects_total", "1h", by="instance, source", base=RW),
             "short", None),
            ("Failed attempts (1 h)",
             inc("ringwatch_source_connection_failures_total", "1h", by="instance, source", base=RW), "short", None),
        ],
        "source"), 12, 8)
    L.add(timeseries(
        "Sources connected",
        targets(("max by (instance, source) (ringwatch_source_connected{%s})" % RW, "{{source}} {{instance}}"),),
        "short", "1 while connected to the source, 0 while connecting or backing off.", minmax=(0, 1)), 6, 8)
    L.add(timeseries(
        "Source reconnects and failed attempts",
        targets((per_hour(rate("ringwatch_source_reconnects_total", by="instance, source", base=RW)),
                 "reconnects {{source}} {{instance}}"),
                (per_hour(rate("ringwatch_source_connection_failures_total", by="instance, source", base=RW)),
                 "failed {{source}} {{instance}}")),
        "suffix:/h", "Connections established again after a break, and attempts that failed or timed out "
        "(each followed by a backoff), per hour.", minmax=(0, None)), 6, 8)
    L.add(timeseries(
        "Source last event age",
        targets(("time() - max by (instance, source) (ringwatch_source_last_event_timestamp_seconds{%s} > 0)" % RW,
                 "{{source}} {{instance}}"),),
        "s", "Time since the last event frame arrived from each source (none until its first). Grows "
        "while a platform is quiet, and while it is disconnected.", minmax=(0, None)), 12, 8)
    L.add(timeseries(
        "Source disconnects by reason",
        targets((per_hour(rate("ringwatch_source_disconnects_total", by="source, reason", base=RW)),
                 "{{source}}: {{reason}}"),),
        "suffix:/h", "Established source connections that ended, per hour, by reason (idle_timeout: no "
        "frame or pong for idle_timeout; journal_error: closed because the journal could not be "
        "written).", minmax=(0, None)), 12, 8)

    L.row("Alerts sent by ringwatch")
    L.add(timeseries(
        "Alerts to Alertmanager",
        targets(("sum by (instance) (ringwatch_alerts_active{%s})" % RW, "firing {{instance}}"),
                (per_minute(rate("ringwatch_alerts_posted_total", by="instance", base=RW)), "posted /min {{instance}}"),
                (per_minute(rate("ringwatch_alert_post_failures_total", by="instance", base=RW)),
                 "failed posts /min {{instance}}")),
        "short", "Supervisor alerts ringwatch sends itself when alerts.alertmanager_url is set: firing "
        "now, deliveries and failed deliveries (retried with backoff).", minmax=(0, None)), 24, 8)
    variables = [query_variable(
        "instance", "Instance", 'label_values(up{job="ringwatch"}, instance)')]
    return dashboard(
        "ringwatch-sre", "ringwatch / SRE",
        "ringwatch itself: scrape health, events in and out, ingest, engine state, durability, "
        "client-mode sources and alert delivery.",
        L, variables, "30s", "now-3h", ["sre"],
    )


BUILDERS = {"wall": wall, "supervisor": supervisor, "sre": sre}


# ---------------------------------------------------------------------------
# Checks.


def render(board):
    return json.dumps(board, indent=2, ensure_ascii=False) + "\n"


def panel_queries(board):
    """Every target expr of every panel, in panel order."""
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                out.append((p["title"], t["expr"]))
            walk(p.get("panels", []))

    walk(board["panels"])
    return out


def substitute(expr):
    for var, value in sorted(SUBSTITUTIONS.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(var, value)
    return " ".join(expr.split())


def exposed_metrics():
    """Every ringwatch_* family named in the sources (self-metrics are
    registered beside the subsystem that records them, so all of src/)."""
    names = set()
    for path in sorted((ROOT / "src").rglob("*.rs")):
        text = path.read_text(encoding="utf-8")
        names.update(re.findall(r'"(ringwatch_[a-z0-9_]+)"', text))
    return names


def recorded_names():
    text = (ROOT / "deploy/prometheus/recording_rules.yml").read_text(encoding="utf-8")
    return set(re.findall(r"^\s*-\s*record:\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*$", text, re.M))


def lint(boards):
    """Problems with the queries, as messages (empty when all is well)."""
    problems = []
    families = exposed_metrics()
    records = recorded_names()
    variables = {v[1:] for v in SUBSTITUTIONS}
    for name, board in boards.items():
        defined = {v["name"] for v in board["templating"]["list"]} | {"__rate_interval"}
        for title, expr in panel_queries(board):
            where = "%s / %s: " % (name, title)
            if expr.count("(") != expr.count(")") or expr.count("{") != expr.count("}"):
                problems.append(where + "unbalanced brackets in " + expr)
            for m in re.finditer(r"\$\{?(\w+)", expr):
                var = m.group(1)
                if var not in variables:
                    problems.append(where + "$%s has no --list-queries substitution" % var)
                elif var not in defined:
                    problems.append(where + "$%s is not a variable of this dashboard" % var)
                elif var != "__rate_interval" and not expr[: m.start()].endswith('=~"'):
                    problems.append(where + "$%s must be inside a =~\"...\" matcher" % var)
            for m in re.finditer(r"(?<![\w:])([a-z_]+:[A-Za-z0-9_]+:[A-Za-z0-9_]+)", expr):
                if m.group(1) not in records:
                    problems.append(where + "%s is not recorded in recording_rules.yml" % m.group(1))
            for m in re.finditer(r"(?<![\w:])(ringwatch_[a-z0-9_]+)(?![\w:])", expr):
                metric = m.group(1)
                family = re.sub(r"_(bucket|sum|count)$", "", metric)
                if metric not in families and family not in families:
                    problems.append(where + "%s is not a metric ringwatch exposes" % metric)
            if "_quantile_seconds" in expr:
                problems.append(where + "*_quantile_seconds gauges do not aggregate; use histogram_quantile")
    return problems


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true",
                      help="exit 1 if a JSON file on disk differs from what would be generated")
    mode.add_argument("--list-queries", action="store_true",
                      help="print every panel query, variables substituted, one a line")
    args = ap.parse_args(argv)

    boards = {name: BUILDERS[kind]() for name, kind in FILES.items()}
    problems = lint(boards)
    if problems:
        for p in problems:
            print("gen.py: " + p, file=sys.stderr)
        return 1

    if args.list_queries:
        seen = set()
        for board in boards.values():
            for _, expr in panel_queries(board):
                q = substitute(expr)
                if q not in seen:
                    seen.add(q)
                    print(q)
        return 0

    stale = []
    for name, board in boards.items():
        path = HERE / name
        text = render(board)
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
            print("wrote dashboards/%s" % name)
    if stale:
        print("gen.py --check: out of date: %s; run python3 dashboards/gen.py" % ", ".join(stale),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
