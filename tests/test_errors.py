"""Malformed specs: every one gives its exact message, position and hint.

Each case is a spec text, the file name it is written to, and the diagnostics
expected, in order: ``(headline, hint)`` with the headline being
``file:line:col: error: message`` exactly as ``xdpmon check`` prints it. The
front end is run the way the CLI runs it (compiler.frontend.load on a real
file), from inside the temporary directory so that paths are short.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from compiler.frontend import load
from dsl.errors import SpecError, render, render_plain

ROOT = Path(__file__).resolve().parent.parent
F = "bad.mon"

LAYER_FIELDS_TCP = "fields of it: tcp.sport, tcp.dport, tcp.port, tcp.seq, ..."
NEVER = "the '{{' at line {}, column {} is never closed"


def E(line, col, msg, hint=None, file=F):
    return (f"{file}:{line}:{col}: error: {msg}", hint)


def app(body: str, name: str = "a") -> str:
    return f"app {name} {{ {body} }}\n"


# (id, source, [expected diagnostics])
CASES = [
    # ---- syntax ------------------------------------------------------------------------
    ("missing_brace_eof", "app a {\n  t1 { select tcp\n",
     [E(2, 18, "unexpected end of file, expected 'select', '}' or an operator", NEVER.format(2, 6))]),
    ("unterminated_app_brace", "app a {\n  t1 { select tcp }\n\n",
     [E(2, 20, "unexpected end of file, expected 'asl', 'mode', 'param', 't1', 't2', 't3' or '}'",
        NEVER.format(1, 7))]),
    ("app_runs_into_next_app", "app a { t1 { select tcp }\napp b { t1 { select udp } }\n",
     [E(2, 1, "unexpected 'app', expected 'asl', 'mode', 'param', 't1', 't2', 't3' or '}'", NEVER.format(1, 7))]),
    ("stray_close_brace", "app a { t1 { select tcp } }\n}\n",
     [E(2, 1, "unexpected '}', expected 'app'", "this '}' closes nothing")]),
    ("missing_operand", app("t1 { select tcp.dport == }"),
     [E(1, 34, "unexpected '}', expected a field, a number or an address",
        "something is missing before this '}'")]),
    ("assign_instead_of_compare", app("t1 { select tcp.dport = 80 }"),
     [E(1, 31, "unexpected '=', expected 'select', '}' or an operator", "compare with '=='")]),
    ("double_ampersand", app("t1 { select tcp && udp }"),
     [E(1, 25, "'&&' is not an operator",
        "write conditions with 'and', 'or', 'not'; '&' is the bitwise and of numbers (tcp.flags & 0x02 != 0)")]),
    ("bang_equals_alone", app("t1 { select not! tcp }"),
     [E(1, 24, "unexpected character '!'",
        "write conditions with 'and', 'or', 'not' and compare with '==' or '!='")]),
    ("semicolon", app("t1 { select tcp; }"),
     [E(1, 24, "unexpected character ';'", "statements end at the end of the line; no ';' is needed")]),
    ("single_quotes", app("t3 { when tcp.syn { alert 'syn' } }"),
     [E(1, 35, "unexpected character \"'\"", "strings use double quotes")]),
    ("unterminated_string", app('t3 { when tcp.syn { alert "syn } }'),
     [E(1, 35, "unterminated string", "a string ends with '\"' on the same line")]),
    ("two_conditions_no_and", app("t1 { select tcp udp }"),
     [E(1, 25, "unexpected 'udp', expected 'select' or '}'", "join conditions with 'and' or 'or'")]),
    ("missing_app_name", "app { t1 { select tcp } }\n",
     [E(1, 5, "unexpected '{', expected a name")]),
    ("unknown_block", app("t4 { select tcp }"),
     [E(1, 9, "unexpected 't4', expected 'asl', 'mode', 'param', 't1', 't2', 't3' or '}'")]),
    ("stat_without_equals", app("t2 { x count() }"),
     [E(1, 16, "unexpected 'count', expected '='")]),
    ("send_without_what", app("t3 { when tcp.syn { send pkt to asl } }"),
     [E(1, 34, "unexpected 'pkt', expected 'packet' or 'summary'")]),
    ("fraction_without_unit", app("t3 { when tcp.window > param w = 1.5 { alert \"w\" } }"),
     [E(1, 42, "'1.5' is not a whole number", "only a number with a unit can have a fraction, e.g. 1.5s")]),
    ("leading_zero", app("t1 { select tcp.dport == 080 }"),
     [E(1, 34, "number '080' has a leading zero", "write 80 (numbers are decimal, or hexadecimal with 0x)")]),
    ("non_ascii_name", "app café { t1 { select tcp } }\n",
     [E(1, 8, "unexpected character 'é'", "names are ASCII letters, digits and '_'")]),
    ("too_deep", app("t1 { select " + "not " * 101 + "tcp }"),
     [E(1, 421, "expression is nested too deeply (more than 100 operators)",
        "split it, or drop redundant parentheses and 'not's")]),
    ("number_too_long", app("t2 { x = count() window " + "9" * 41 + "s }"),
     [E(1, 33, "number '99999999999999999999...' is too long", "no count or duration needs that many digits")]),

    # ---- names and fields in each tier ---------------------------------------------------
    ("unknown_field_t1", app("t1 { select tcp.sprot == 80 }"),
     [E(1, 21, "unknown field 'tcp.sprot'", "did you mean 'tcp.sport'?")]),
    ("unknown_layer_t1", app("t1 { select ip6.src == ::1 }"),
     [E(1, 21, "unknown name 'ip6.src'", "did you mean 'ipv6.src'?")]),
    ("unknown_field_t2_key", app("t2 { x = count() by ip.dest }"),
     [E(1, 29, "unknown field 'ip.dest'", "did you mean 'ip.dst'?")]),
    ("unknown_field_t2_arg", app("t2 { x = sum(pkt.length) }"),
     [E(1, 22, "unknown field 'pkt.length'", "did you mean 'pkt.len'?")]),
    ("unknown_field_t2_where", app("t2 { x = count() where dns.qrr }"),
     [E(1, 32, "unknown field 'dns.qrr'", "did you mean 'dns.qr'?")]),
    ("unknown_field_track", app("t2 { p = track (ip.src) open when tcp.synn close when tcp.fin expire 5s }"),
     [E(1, 43, "unknown field 'tcp.synn'", "did you mean 'tcp.syn'?")]),
    ("unknown_field_t3_when", app('t3 { when icmp.typ == 3 { alert "x" } }'),
     [E(1, 19, "unknown field 'icmp.typ'", "did you mean 'icmp.type'?")]),
    ("unknown_field_t3_send", app("t3 { when tcp.syn { send packet(tcp.dprt) to asl } }"),
     [E(1, 41, "unknown field 'tcp.dprt'", "did you mean 'tcp.dport'?")]),
    ("send_packet_of_layer", app("t3 { when tcp.syn { send packet(tcp) to asl } }"),
     [E(1, 41, "send packet field must be a field, not the layer 'tcp'", LAYER_FIELDS_TCP)]),
    ("key_is_layer", app("t2 { x = count() by tcp }"),
     [E(1, 29, "key must be a field, not the layer 'tcp'", LAYER_FIELDS_TCP)]),
    ("stat_used_in_t1", app("t2 { x = count() } t1 { select x > 10 }"),
     [E(1, 40, "stat 'x' cannot be used in t1", "statistics are read in t3 conditions")]),
    ("stat_used_in_where", app("t2 { x = count() y = count() where x > 1 }"),
     [E(1, 44, "stat 'x' cannot be used in t2", "statistics are read in t3 conditions")]),
    ("unknown_stat_t3", app('t2 { syns = count() } t3 { when sins > 1 { alert "x" } }'),
     [E(1, 41, "unknown name 'sins'", "did you mean 'syns'?")]),

    # ---- kinds ----------------------------------------------------------------------------
    ("type_mismatch_flag_vs_number", app("t1 { select tcp.syn == 80 }"),
     [E(1, 21, "cannot compare 'tcp.syn' (a condition) with 80 (a number)",
        "'tcp.syn' is a flag: write 'tcp.syn' or 'not tcp.syn'")]),
    ("type_mismatch_v4_v6", app("t1 { select ipv4.src == 2001:db8::1 }"),
     [E(1, 21, "cannot compare 'ipv4.src' (an IPv4 address) with 2001:db8::1 (an IPv6 address)",
        "ipv4.* fields hold IPv4 addresses; use ip.* for both families")]),
    ("field_is_not_a_condition", app("t1 { select ip.src }"),
     [E(1, 21, "expected a condition, but 'ip.src' is an IP address",
        "compare it: ip.src == ADDRESS or ip.src in PREFIX")]),
    ("sum_of_flag", app("t2 { x = sum(tcp.syn) }"),
     [E(1, 22, "sum() needs a number, but 'tcp.syn' is a condition",
        "numeric fields include pkt.len, ip.ttl, tcp.window")]),
    ("address_ordered", app('t3 { when ip.src > 10.0.0.1 { alert "x" } }'),
     [E(1, 19, "addresses can only be compared with '==' or '!=', not '>'",
        "for ranges of addresses use 'in' with a prefix")]),

    # ---- literals -------------------------------------------------------------------------
    ("bad_cidr", app("t1 { select ip.dst in 10.0.0.0/33 }"),
     [E(1, 31, "invalid IPv4 prefix '10.0.0.0/33'", "an IPv4 prefix is an address and a length from 0 to 32")]),
    ("bad_ipv6_prefix", app("t1 { select ip.dst in 2001:db8::/129 }"),
     [E(1, 31, "invalid IPv6 prefix '2001:db8::/129'",
        "an IPv6 prefix is an address and a length from 0 to 128")]),
    ("prefix_host_bits", app("t1 { select ip.dst in 10.0.0.1/8 }"),
     [E(1, 31, "invalid IPv4 prefix '10.0.0.1/8'", "the prefix has host bits set; did you mean 10.0.0.0/8?")]),
    ("bad_ipv4_address", app("t1 { select ip.dst == 999.0.0.1 }"),
     [E(1, 31, "invalid IPv4 address '999.0.0.1'", "'999.0.0.1' does not appear to be an IPv4 or IPv6 address")]),
    ("prefix_with_equals", app("t1 { select ip.dst == 10.0.0.0/8 }"),
     [E(1, 31, "a prefix (10.0.0.0/8) can only be used with 'in'", "write FIELD in 10.0.0.0/8")]),
    ("either_port_not_equal", app("t1 { select udp.port != 53 }"),
     [E(1, 21, "'udp.port' means either port and supports only '==' and 'in'",
        "for 'neither port is 53' write: not udp.port == 53")]),
    ("either_port_as_key", app("t2 { x = count() by tcp.port }"),
     [E(1, 29, "'tcp.port' means either port and cannot be a key", "key by tcp.sport or tcp.dport")]),
    ("range_lo_gt_hi", app("t1 { select tcp.dport in 1024..80 }"),
     [E(1, 34, "empty range 1024..80", "write 80..1024")]),
    ("number_too_big_for_field", app("t1 { select ip.ttl == 256 }"),
     [E(1, 31, "256 does not fit in 'ip.ttl' (8 bits, at most 255)")]),
    ("duration_too_big_for_field", app('t3 { when tcp.sport > 1s { alert "x" } }'),
     [E(1, 31, "1s (1000000000) does not fit in 'tcp.sport' (16 bits, at most 65535)")]),
    ("set_member_too_big", app("t1 { select tcp.dport in {80, 70000} }"),
     [E(1, 39, "70000 does not fit in 'tcp.dport' (16 bits)")]),
    ("number_beyond_64_bits", app("t1 { select pkt.ts > 18446744073709551616 }"),
     [E(1, 30, "18446744073709551616 does not fit in 64 bits")]),
    ("unknown_unit_in_condition", app('t3 { when pkt.len > 5q { alert "x" } }'),
     [E(1, 29, "unknown unit 'q' in '5q'",
        "durations take ns, us, ms, s, m (or min), h, d; counts take k, M, G (powers of 1000) "
        "or Ki, Mi, Gi (powers of 1024)")]),

    # ---- T2 -------------------------------------------------------------------------------
    ("unknown_aggregate", app("t2 { x = cnt() }"),
     [E(1, 18, "unknown aggregate 'cnt'", "did you mean 'count'?")]),
    ("unknown_aggregate_no_match", app("t2 { x = avg(pkt.len) }"),
     [E(1, 18, "unknown aggregate 'avg'",
        "aggregates are count, sum, min, max, distinct, hist, cms, and track")]),
    ("count_with_argument", app("t2 { x = count(tcp.sport) }"),
     [E(1, 18, "count() takes 0 field arguments, not 1",
        "count() counts packets; to count per value, write count() by FIELD")]),
    ("window_without_unit", app("t2 { x = count() window 10 }"),
     [E(1, 33, "window needs a unit", "write e.g. 10s or 10ms (ns, us, ms, s, m (or min), h, d)")]),
    ("window_unknown_unit", app("t2 { x = count() window 5sec }"),
     [E(1, 33, "unknown time unit 'sec' in window", "use one of ns, us, ms, s, m (or min), h, d")]),
    ("window_twice", app("t2 { x = count() window 1s window 5s }"),
     [E(1, 36, "'window' given twice for one statistic", "the first is at line 1, column 26")]),
    ("expire_without_unit", app("t2 { p = track (ip.src) open when tcp.syn close when tcp.fin expire 30 }"),
     [E(1, 77, "expire needs a unit", "write e.g. 30s or 30ms (ns, us, ms, s, m (or min), h, d)")]),
    ("track_with_by", app("t2 { p = track (ip.src) open when tcp.syn close when tcp.fin expire 5s by ip.dst }"),
     [E(1, 83, "a track table is keyed by its own field list; 'by' is not allowed here")]),
    ("size_unkeyed", app("t2 { x = count() size 100 }"),
     [E(1, 31, "'size' applies to keyed statistics only", "add 'by FIELD', or drop 'size'")]),
    ("size_is_a_duration", app("t2 { x = count() by ip.src size 5s }"),
     [E(1, 41, "size is a count, not a duration", "write a plain number such as 5")]),
    ("size_too_big", app("t2 { x = count() by ip.src size 100M }"),
     [E(1, 41, "size must be between 1 and 16777216, not 100000000")]),
    ("on_full_unknown", app("t2 { x = count() by ip.src on full drop }"),
     [E(1, 44, "unknown full-map policy 'drop'",
        "write 'on full lru' (evict the least recently used) or 'on full count' (drop new keys, count the failures)")]),
    ("duplicate_stat", "app a {\n  t2 {\n    x = count()\n    x = sum(pkt.len)\n  }\n}\n",
     [E(4, 5, "duplicate stat 'x' in app 'a'", "'x' is already defined at line 3, column 5")]),
    ("duplicate_value_names", app("t2 { x = count() as n, sum(pkt.len) as n }"),
     [E(1, 32, "stat 'x' has two values named 'n'", "give one of them another name with 'as NAME'")]),
    ("duplicate_default_value_names", app("t2 { x = count(), count() }"),
     [E(1, 27, "stat 'x' has two values named 'count'", "give one of them another name with 'as NAME'")]),
    ("stat_named_like_layer", app("t2 { tcp = count() }"),
     [E(1, 14, "stat name 'tcp' is the name of a protocol layer", "pick another name, e.g. 'tcp_stats'")]),
    ("key_too_big", app("t2 { x = count() by (ip.src, ip.dst, ipv6.src, ipv6.dst, tcp.sport) }"),
     [E(1, 29, "key is 66 bytes; the limit is 64")]),
    ("registers_not_power_of_two", app("t2 { x = distinct(ip.src, registers=1000) }"),
     [E(1, 45, "registers must be a power of two from 16 to 65536, not 1000")]),
    ("cms_keyed", app("t2 { x = cms(ip.src) by ip.dst }"),
     [E(1, 18, "cms is a sketch over its own arguments and cannot be keyed", "write cms(ip.dst) without 'by'")]),
    ("option_unknown", app("t2 { x = count(width=2) }"),
     [E(1, 30, "count() has no option 'width'", "count() takes no options")]),

    # ---- T3 -------------------------------------------------------------------------------
    ("size_of_non_track", app('t2 { x = count() } t3 { when size(x) > 1 { alert "y" } }'),
     [E(1, 43, "size() counts the open entries of a track table; 'x' is not one")]),
    ("track_read_directly",
     app('t2 { p = track (ip.src) open when tcp.syn close when tcp.fin expire 5s } t3 { when p > 1 { alert "y" } }'),
     [E(1, 92, "'p' is a track table; read its number of open entries with size(p)")]),
    ("several_values_unnamed", app('t2 { x = count(), sum(pkt.len) } t3 { when x > 1 { alert "y" } }'),
     [E(1, 52, "stat 'x' has several values; name one", "write x.count or x.sum_pkt_len")]),
    ("unknown_value", app('t2 { x = count(), sum(pkt.len) } t3 { when x.bytes > 1 { alert "y" } }'),
     [E(1, 52, "stat 'x' has no value 'bytes'", "its values: count, sum_pkt_len")]),
    ("hist_compared", app('t2 { h = hist(pkt.len) } t3 { when h > 1 { alert "y" } }'),
     [E(1, 44, "a hist() value cannot be compared", "histograms are read by the ASL and the live view")]),
    ("param_without_default", app('t3 { when pkt.len > param big { alert "y" } }'),
     [E(1, 35, "param 'big' has no default", "give it one where it is first used: param big = 100")]),
    ("param_two_defaults",
     "app a {\n  t3 {\n    when pkt.len > param big = 1000 { alert \"y\" }\n"
     "    when ip.ttl > param big = 64 { alert \"z\" }\n  }\n}\n",
     [E(4, 31, "param 'big' has two defaults (1000 and 64)",
        "it is first given at line 3; give the default once")]),
    ("rule_without_action", app("t3 { when tcp.syn { } }"),
     [E(1, 14, "a 'when' rule needs at least one action",
        'actions: send packet(...) to asl, send summary to asl, enable APP for D, alert "..."')]),
    ("bad_rate_unit", app('t3 { when tcp.syn { alert "x" limit 5/sec } }'),
     [E(1, 47, "unknown rate unit '/sec'", "write a rate as N/s, N/ms, N/m or N/h")]),
    ("rate_zero", app('t3 { when tcp.syn { alert "x" limit 0/s } }'),
     [E(1, 39, "a rate limit must be between 1 and 4294967295, not 0")]),
    ("send_either_port", app("t3 { when tcp.syn { send packet(tcp.port) to asl } }"),
     [E(1, 41, "'tcp.port' means either port; send tcp.sport and tcp.dport instead")]),
    ("division_by_zero", app('t3 { when pkt.len / 0 > 1 { alert "x" } }'),
     [E(1, 29, "division by zero")]),
    ("enable_unknown_app", app("t3 { when tcp.syn { enable syn_flod for 10s } }"),
     [E(1, 36, "'enable' names unknown app 'syn_flod'", "enable names an app with 'mode on_demand'")]),
    ("enable_unknown_app_near",
     app("t3 { when tcp.syn { enable syn_flod for 10s } }") + app("mode on_demand", "syn_flood"),
     [E(1, 36, "'enable' names unknown app 'syn_flod'", "did you mean 'syn_flood'? (an app)")]),
    ("enable_always_on_app", app("t3 { when tcp.syn { enable b for 10s } }") + app("t1 { select udp }", "b"),
     [E(1, 36, "'enable' names app 'b', which is always on", "add 'mode on_demand' to app 'b'")]),
    ("enable_self", app("mode on_demand t3 { when tcp.syn { enable a for 10s } }"),
     [E(1, 51, "app 'a' cannot enable itself")]),
    ("enable_without_unit", app("t3 { when tcp.syn { enable b for 10 } }") + app("mode on_demand", "b"),
     [E(1, 42, "enable duration needs a unit", "write e.g. 10s or 10ms (ns, us, ms, s, m (or min), h, d)")]),

    # ---- apps -----------------------------------------------------------------------------
    ("unknown_mode", app("mode sometimes"),
     [E(1, 14, "unknown mode 'sometimes'", "mode is 'always' or 'on_demand'")]),
    ("mode_typo", app("mode ondemand"),
     [E(1, 14, "unknown mode 'ondemand'", "did you mean 'on_demand'?")]),
    ("duplicate_app", app("t1 { select tcp }") + app("t1 { select udp }"),
     [E(2, 5, "duplicate app 'a'", "'a' is already defined at bad.mon:1:5")]),
    ("block_twice", app("t1 { select tcp } t1 { select udp }"),
     [E(1, 27, "'t1' given twice in app 'a'", "the first is at line 1, column 9; merge them into one")]),
    ("asl_not_python", app('asl "handler.sh"'),
     [E(1, 13, "asl handlers are Python files", "name a .py file")]),
    ("c_keyword_app", app("t1 { select tcp }", "while"),
     [E(1, 5, "app name 'while' is a reserved word in C", "rename it, e.g. 'while_'")]),
    ("python_keyword_stat", app("t2 { lambda = count() }"),
     [E(1, 14, "stat name 'lambda' is a reserved word in Python", "rename it, e.g. 'lambda_'")]),
    ("keyword_alias", app("t2 { x = count() as int }"),
     [E(1, 29, "alias 'int' is a reserved word in C", "rename it, e.g. 'int_'")]),
    ("keyword_param", app('t3 { when pkt.len > param def = 1 { alert "x" } }'),
     [E(1, 35, "param name 'def' is a reserved word in Python", "rename it, e.g. 'def_'")]),
    ("identifier_65_chars", app("t1 { select tcp }", "a" * 65),
     [E(1, 5, "app name 'aaaaaaaaaaaaaaaaaaaa...' is 65 characters long; the limit is 64",
        "names become C and Python identifiers; pick a shorter one")]),
    ("reserved_prefix", app("t1 { select tcp }", "xm_watch"),
     [E(1, 5, "app name 'xm_watch' starts with 'xm_', which is reserved for the compiler",
        "rename it, e.g. 'watch'")]),

    # ---- several errors in one file ------------------------------------------------------
    ("two_apps_two_errors",
     app("t1 { select tcp.sprot == 80 }") + app("t2 { x = cnt() }", "b"),
     [E(1, 21, "unknown field 'tcp.sprot'", "did you mean 'tcp.sport'?"),
      E(2, 18, "unknown aggregate 'cnt'", "did you mean 'count'?")]),
    ("syntax_and_semantic_errors",
     app("t1 { select tcp == }") + app("t1 { select udp.dprot == 53 }", "b"),
     [E(1, 28, "unexpected '}', expected a field, a number or an address",
        "something is missing before this '}'"),
      E(2, 21, "unknown field 'udp.dprot'", "did you mean 'udp.dport'?")]),
    ("three_errors_in_one_app",
     "app a {\n  mode sometimes\n  t1 { select tcp.syn == 2 }\n  t2 { x = count() window 10 }\n}\n",
     [E(2, 8, "unknown mode 'sometimes'", "mode is 'always' or 'on_demand'"),
      E(3, 15, "cannot compare 'tcp.syn' (a condition) with 2 (a number)",
        "'tcp.syn' is a flag: write 'tcp.syn' or 'not tcp.syn'"),
      E(4, 27, "window needs a unit", "write e.g. 10s or 10ms (ns, us, ms, s, m (or min), h, d)")]),

    ("bad_cidr_and_unknown_enable",
     app("t1 { select ip.dst in 10.0.0.1/8 } t3 { when tcp { enable zz for 1s } }"),
     [E(1, 31, "invalid IPv4 prefix '10.0.0.1/8'", "the prefix has host bits set; did you mean 10.0.0.0/8?"),
      E(1, 67, "'enable' names unknown app 'zz'", "enable names an app with 'mode on_demand'")]),
    ("enable_of_app_that_did_not_parse_is_not_unknown",
     app("mode on_demand t1 { select == }") + app("t3 { when tcp { enable a for 1s } }", "b"),
     [E(1, 36, "unexpected '==', expected a field, a number or an address")]),

    ("two_bad_selects", app("t1 { select alert select 5 }"),
     [E(1, 21, "unknown name 'alert'"),
      E(1, 34, "expected a condition, but 5 is a number")]),

    # ---- bitwise and: integer fields only ------------------------------------------------------
    ("bitwise_and_on_a_flag", app("t1 { select tcp.syn & 1 == 1 }"),
     [E(1, 21, "'&' needs numbers, but 'tcp.syn' is a condition",
        "a flag is a condition on its own (tcp.syn); or test its bit: tcp.flags & 0x02 != 0")]),
    ("bitwise_and_on_another_flag", app("t1 { select dns.qr & 1 == 1 }"),
     [E(1, 21, "'&' needs numbers, but 'dns.qr' is a condition",
        "a flag is a condition on its own (dns.qr); join conditions with 'and'")]),
    ("bitwise_and_of_conditions", app("t1 { select tcp & udp }"),
     [E(1, 21, "'&' needs numbers, but 'tcp' is a condition", "join conditions with 'and'")]),
    ("bitwise_and_on_an_address", app("t1 { select ip.src & 0xff == 1 }"),
     [E(1, 21, "'&' needs numbers, but 'ip.src' is an IP address",
        "'&' is for integer fields; test an address with ==, != or in (ip.src in 192.0.2.0/24)")]),
    ("bitwise_and_on_either_port", app("t1 { select tcp.port & 1 == 1 }"),
     [E(1, 21, "'tcp.port' means either port and cannot be computed with", "use tcp.sport or tcp.dport")]),
    ("arithmetic_on_either_port", app("t3 { when udp.port + 1 == 54 { alert \"x\" } }"),
     [E(1, 19, "'udp.port' means either port and cannot be computed with", "use udp.sport or udp.dport")]),
    ("bitwise_and_not_compared", app("t1 { select tcp.flags & 0x12 }"),
     [E(1, 21, "expected a condition, but the expression is a number",
        "compare it: tcp.flags & 0x12 != 0 (any of its bits set) or tcp.flags & 0x12 == 0x12 (all of them)")]),
    ("bitwise_and_missing_operand", app("t1 { select tcp.flags & == 2 }"),
     [E(1, 33, "unexpected '==', expected a field, a number or an address")]),

    # ---- an aggregate's options after its parentheses -------------------------------------
    ("registers_after_parens", app("t2 { u = distinct(ip.src) registers=64 by ip.dst }"),
     [E(1, 45, "unexpected '64', expected 'track' or a name",
        "an aggregate's options go inside its parentheses, after its fields: e.g. "
        "distinct(ip.src, registers=1024)")]),
    ("width_after_parens", app("t2 { h = cms(ip.src) width = 4k }"),
     [E(1, 38, "unexpected '4k', expected 'track' or a name",
        "an aggregate's options go inside its parentheses, after its fields: e.g. cms(ip.src, width=4096)")]),

    # ---- bytes that are not a spec -------------------------------------------------------
    ("empty_file", "",
     [E(1, 1, "no apps in this file", "a spec defines one or more apps: app NAME { ... }")]),
    ("only_comments", "# nothing yet\n\n",
     [E(1, 1, "no apps in this file", "a spec defines one or more apps: app NAME { ... }")]),
    ("non_utf8", b"app a { t1 { select tcp } }\napp b { t1 { select \xff } }\n",
     [E(2, 21, "file is not valid UTF-8 (byte 0xff)", "spec files are UTF-8 text")]),
    ("non_utf8_after_multibyte", "app é".encode() + b"\xc3(",
     [E(1, 6, "file is not valid UTF-8 (byte 0xc3)", "spec files are UTF-8 text")]),
    ("nul_byte", b"app a { t1 { select tcp\x00 } }\n",
     [E(1, 24, "file contains a NUL byte", "spec files are UTF-8 text")]),
    ("megabyte_of_junk", "x" * (1 << 20),
     [E(1, 1, "unexpected 'xxxxxxxxxxxxxxxxxxxxxxxxxxx...', expected 'app'")]),
    ("megabyte_of_binary", bytes(range(128, 256)) * 8192,
     [E(1, 1, "file is not valid UTF-8 (byte 0x80)", "spec files are UTF-8 text")]),
    ("too_large", b"#" * (5 << 20),
     [E(1, 1, "file is too large for a spec (5242880 bytes; the limit is 4194304)")]),
]


def _load_diags(tmp_path, monkeypatch, source, name=F):
    monkeypatch.chdir(tmp_path)
    data = source if isinstance(source, bytes) else source.encode()
    Path(name).write_bytes(data)
    with pytest.raises(SpecError) as info:
        load([name])
    return info.value


@pytest.mark.parametrize("source,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_error(tmp_path, monkeypatch, source, expected):
    err = _load_diags(tmp_path, monkeypatch, source)
    got = [(d.headline(), d.hint) for d in err.diagnostics]
    assert got == expected


# Inputs close to the errors above that must be accepted.
ACCEPTED = [
    app("t1 { select ip.src == ::ffff:192.0.2.1 }"),
    app("t1 { select ip.dst in {10.0.0.0/8, 2001:db8::/32, 192.0.2.1} and eth.src != 00:11:22:33:44:55 }"),
    app("t2 { x = count() window 1.1ms }"),
    app("t1 { select tcp.dport in 1024..65535 and tcp.flags == 0x12 }"),
    app("t1 { select tcp.flags & 0x12 == 0x02 and (ip.ttl & 0x80 != 0 or pkt.len & 3 in {1, 2}) }"),
    app('t2 { n = count() by ip.src where tcp.flags & 4 != 0 } t3 { when n & 1 == 1 { alert "odd" } }'),
    app("t1 { select not udp.port == 53 and tcp.port in {80, 443} }"),
    app("t1 { select " + "(" * 500 + "tcp" + ")" * 500 + " }"),
    app("t1 { select " + "not " * 99 + "tcp }"),
    app('t3 { when pkt.len > param big = 1000 and ip.ttl > param big = 1000 { alert "x" } }'),
    "# comment only before\napp a { t1 { select tcp } }  # and after\n",
    "\ufeffapp a { t1 { select tcp } }\r\n",
]


@pytest.mark.parametrize("source", ACCEPTED)
def test_accepted(tmp_path, monkeypatch, source):
    monkeypatch.chdir(tmp_path)
    Path(F).write_bytes(source.encode())
    program, _ = load([F])
    assert [a.name for a in program.apps] == ["a"]


def test_enough_cases():
    assert len(CASES) >= 45


def test_unreadable_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpecError) as info:
        load(["missing.mon"])
    assert [d.headline() for d in info.value.diagnostics] == [
        "missing.mon:1:1: error: cannot read spec: No such file or directory"]


def test_directory_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dir.mon").mkdir()
    with pytest.raises(SpecError) as info:
        load(["dir.mon"])
    assert [d.headline() for d in info.value.diagnostics] == [
        "dir.mon:1:1: error: cannot read spec: Is a directory"]


def test_permission_denied(tmp_path, monkeypatch):
    # Root reads any file, so the refusal is simulated at the read.
    monkeypatch.chdir(tmp_path)
    Path("secret.mon").write_text(app("t1 { select tcp }"))

    def refuse(path, mode="r"):
        raise PermissionError(13, "Permission denied", str(path))
    monkeypatch.setattr("dsl.parser.open", refuse, raising=False)
    with pytest.raises(SpecError) as info:
        load(["secret.mon"])
    assert [d.headline() for d in info.value.diagnostics] == [
        "secret.mon:1:1: error: cannot read spec: Permission denied"]


TOO_LARGE_STREAM = "error: file is too large for a spec (more than 4194304 bytes; the limit is 4194304)"


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_endless_device_is_refused_after_the_limit(device):
    with pytest.raises(SpecError) as info:
        load([device])
    assert [d.headline() for d in info.value.diagnostics] == [f"{device}:1:1: {TOO_LARGE_STREAM}"]


def _fifo_writer(path: Path, data: bytes, forever: bool) -> threading.Thread:
    def write():
        try:
            with open(path, "wb") as f:
                f.write(data)
                while forever:
                    f.write(bytes(65536))
        except BrokenPipeError:          # the reader stopped reading: expected when forever
            pass
    t = threading.Thread(target=write, daemon=True)
    t.start()
    return t


def test_fifo_that_never_ends_is_refused_after_the_limit(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.mkfifo("endless.mon")
    writer = _fifo_writer(Path("endless.mon"), b"", forever=True)
    with pytest.raises(SpecError) as info:
        load(["endless.mon"])
    writer.join(10)
    assert not writer.is_alive()
    assert [d.headline() for d in info.value.diagnostics] == [f"endless.mon:1:1: {TOO_LARGE_STREAM}"]


def test_fifo_with_a_spec_is_read_like_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.mkfifo("piped.mon")
    writer = _fifo_writer(Path("piped.mon"), app("t1 { select tcp }", "piped").encode(), forever=False)
    program, sources = load(["piped.mon"])
    writer.join(10)
    assert [a.name for a in program.apps] == ["piped"]
    assert sources == {"piped.mon": "app piped { t1 { select tcp } }\n"}


def test_cli_check_dev_zero_exits_2(tmp_path):
    r = _xdpmon(["/dev/zero"], tmp_path)
    assert (r.returncode, r.stdout, r.stderr) == (2, "", f"/dev/zero:1:1: {TOO_LARGE_STREAM}\n1 error\n")


def test_cli_dump_ast_of_dev_zero_exits_2(tmp_path):
    r = subprocess.run([sys.executable, "-m", "runtime.cli", "compile", "--dump", "ast", "/dev/zero"], cwd=tmp_path,
                       env=dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1"), capture_output=True, text=True,
                       timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (2, "", f"/dev/zero:1:1: {TOO_LARGE_STREAM}\n1 error\n")


def test_cli_ctrl_c_while_waiting_for_a_fifo_exits_130(tmp_path):
    """A FIFO with no writer: check waits in open(2) for one (the kernel's wait_for_partner)
    until SIGINT."""
    os.mkfifo(tmp_path / "nobody.mon")
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    p = subprocess.Popen([sys.executable, "-m", "runtime.cli", "check", "nobody.mon"], cwd=tmp_path,
                         env=dict(env, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if Path(f"/proc/{p.pid}/wchan").read_text() == "wait_for_partner":
                break
            time.sleep(0.05)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert (p.returncode, out, err) == (130, "", "xdpmon: interrupted\n")


def test_path_with_nul(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpecError) as info:
        load(["a\0b.mon"])
    assert [d.headline() for d in info.value.diagnostics] == [
        "a\0b.mon:1:1: error: cannot read spec: embedded null byte"]


def test_errors_of_several_files_are_all_reported(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("one.mon").write_text(app("t1 { select tcp.sprot == 1 }"))
    Path("two.mon").write_text(app("mode sometimes", "b"))
    Path("three.mon").write_text(app("t1 { select udp }", "a"))
    with pytest.raises(SpecError) as info:
        load(["one.mon", "two.mon", "three.mon", "nothere.mon"])
    assert [d.headline() for d in info.value.diagnostics] == [
        "nothere.mon:1:1: error: cannot read spec: No such file or directory",
        "one.mon:1:21: error: unknown field 'tcp.sprot'",
        "three.mon:1:5: error: duplicate app 'a'",
        "two.mon:1:14: error: unknown mode 'sometimes'",
    ]


# ---- rendering: the source line and a caret under the whole span -------------------------

RENDERED = [
    (app("t1 { select tcp.sprot == 80 }"),
     "bad.mon:1:21: error: unknown field 'tcp.sprot'\n"
     "  app a { t1 { select tcp.sprot == 80 } }\n"
     "                      ^^^^^^^^^\n"
     "hint: did you mean 'tcp.sport'?"),
    ("app a {\n\tt1 { select tcp.syn == 80 }\n}\n",
     "bad.mon:2:14: error: cannot compare 'tcp.syn' (a condition) with 80 (a number)\n"
     "   t1 { select tcp.syn == 80 }\n"
     "               ^^^^^^^^^^^^^\n"
     "hint: 'tcp.syn' is a flag: write 'tcp.syn' or 'not tcp.syn'"),
    (app("t2 { x = count() by ip.src size 100M }"),
     "bad.mon:1:41: error: size must be between 1 and 16777216, not 100000000\n"
     "  app a { t2 { x = count() by ip.src size 100M } }\n"
     "                                          ^^^^"),
    (app("t1 { select ip.dst in 10.0.0.1/8 }"),
     "bad.mon:1:31: error: invalid IPv4 prefix '10.0.0.1/8'\n"
     "  app a { t1 { select ip.dst in 10.0.0.1/8 } }\n"
     "                                ^^^^^^^^^^\n"
     "hint: the prefix has host bits set; did you mean 10.0.0.0/8?"),
]


@pytest.mark.parametrize("source,text", RENDERED)
def test_render_source_line_and_caret(tmp_path, monkeypatch, source, text):
    err = _load_diags(tmp_path, monkeypatch, source)
    (diag,) = err.diagnostics
    assert render_plain(diag, err.sources) == text


def test_render_long_line_is_cut_around_the_span(tmp_path, monkeypatch):
    err = _load_diags(tmp_path, monkeypatch, "x" * (1 << 20))
    lines = render_plain(err.diagnostics[0], err.sources).split("\n")
    assert len(lines) == 3 and all(len(line) < 120 for line in lines)
    assert lines[1] == "  " + "x" * 100 + "..."
    assert lines[2] == "  " + "^" * 100


def test_render_control_characters_keep_the_caret_aligned(tmp_path, monkeypatch):
    err = _load_diags(tmp_path, monkeypatch, b"app a { t1 { select tcp\x00 } }\n")
    lines = render_plain(err.diagnostics[0], err.sources).split("\n")
    assert lines[1] == "  app a { t1 { select tcp\ufffd } }"
    assert lines[2] == "  " + " " * 23 + "^"


def test_render_plain_stream_has_no_escapes(tmp_path, monkeypatch):
    import io

    err = _load_diags(tmp_path, monkeypatch, app("mode sometimes"))
    out = io.StringIO()
    render(err.diagnostics, err.sources, color=False, file=out)
    assert "\x1b[" not in out.getvalue()
    out = io.StringIO()
    render(err.diagnostics, err.sources, color=True, file=out)
    assert "\x1b[" in out.getvalue()
    assert "unknown mode 'sometimes'" in out.getvalue()


# ---- the command line -----------------------------------------------------------------------

def _xdpmon(args, cwd, **env_over):
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    env.update(env_over)
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "runtime.cli", "check", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


BAD_INPUTS = {
    "syntax.mon": app("t1 { select tcp == }").encode(),
    "semantic.mon": app("t2 { x = cnt() }", "b").encode(),
    "binary.mon": bytes(range(256)) * 64,
    "nul.mon": b"app\x00",
    "empty.mon": b"",
    "junk.mon": b"}{)(][" * 1000,
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_cli_bad_input_exit_2_no_traceback(tmp_path, name):
    (tmp_path / name).write_bytes(BAD_INPUTS[name])
    r = _xdpmon([name], tmp_path)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert r.stderr.startswith(f"{name}:")
    assert r.stdout == ""
    assert r.stderr.rstrip().endswith(("1 error", "errors"))


def test_cli_missing_file(tmp_path):
    r = _xdpmon(["nothere.mon"], tmp_path)
    assert r.returncode == 2
    assert r.stderr.splitlines()[0] == "nothere.mon:1:1: error: cannot read spec: No such file or directory"


def test_cli_reports_all_files(tmp_path):
    for name, data in BAD_INPUTS.items():
        (tmp_path / name).write_bytes(data)
    r = _xdpmon(sorted(BAD_INPUTS), tmp_path)
    assert r.returncode == 2
    heads = [ln for ln in r.stderr.splitlines() if ": error: " in ln]
    assert {h.split(":")[0] for h in heads} == set(BAD_INPUTS)
    assert "Traceback" not in r.stderr


def test_cli_good_specs_one_line_per_app():
    specs = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "specs").glob("*.mon"))
    r = _xdpmon(specs, ROOT)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == len(specs)
    assert lines[0] == ("dns_amplification: mode always; t1 select; t2 2 stats (queries, responses); "
                        "t3 1 rule; params min_bytes=1000000, ratio=10")
    by_app = {ln.split(":")[0]: ln for ln in lines}
    assert by_app["syn_flood"] == ("syn_flood: mode on_demand; t1 select; t2 1 stat (syns); t3 1 rule; "
                                   "params per_dst=1000")
    assert "Traceback" not in r.stderr


def test_cli_force_color_gives_escapes(tmp_path):
    (tmp_path / F).write_text(app("mode sometimes"))
    r = _xdpmon([F], tmp_path, FORCE_COLOR="1")
    assert r.returncode == 2
    assert "\x1b[" in r.stderr
    assert "unknown mode 'sometimes'" in r.stderr


def test_cli_pipe_is_plain(tmp_path):
    (tmp_path / F).write_text(app("mode sometimes"))
    r = _xdpmon([F], tmp_path)
    assert r.returncode == 2
    assert "\x1b[" not in r.stderr
    assert r.stderr == ("bad.mon:1:14: error: unknown mode 'sometimes'\n"
                        "  app a { mode sometimes }\n"
                        "               ^^^^^^^^^\n"
                        "hint: mode is 'always' or 'on_demand'\n"
                        "1 error\n")


def test_cli_no_color_wins_over_force_color(tmp_path):
    (tmp_path / F).write_text(app("mode sometimes"))
    r = _xdpmon([F], tmp_path, FORCE_COLOR="1", NO_COLOR="1")
    assert r.returncode == 2
    assert "\x1b[" not in r.stderr


def test_string_escapes_are_as_the_readme_says(tmp_path, monkeypatch):
    """\\" is a quote, \\\\ a backslash, every other backslash stays as written."""
    monkeypatch.chdir(tmp_path)
    Path(F).write_text(app(r't3 { when tcp.syn { alert "say \"hi\" \\ a\tb\n" } }'))
    program, _ = load([F])
    (action,) = program.apps[0].rules[0].actions
    assert action.message == 'say "hi" \\ a\\tb\\n'


# ---- notes: accepted, but worth knowing ---------------------------------------------------------

def _notes(tmp_path, monkeypatch, files: dict[str, str]) -> list[str]:
    monkeypatch.chdir(tmp_path)
    for name, text in files.items():
        Path(name).write_text(text)
    program, sources = load(list(files))
    return [render_plain(n, sources) for n in program.notes]


NEVER_ENABLED = ("a.mon:1:5: note: on-demand app 'od' is enabled by no rule of the apps given; it stays off "
                 "unless it is enabled at run time\n"
                 "  app od { mode on_demand t2 { n = count() } }\n"
                 "      ^^\n"
                 "hint: another app's rule switches it on with: enable od for DURATION")


def test_note_on_demand_app_that_nothing_enables(tmp_path, monkeypatch):
    assert _notes(tmp_path, monkeypatch, {"a.mon": app("mode on_demand t2 { n = count() }", "od")}) == [NEVER_ENABLED]


def test_no_note_when_another_app_enables_it(tmp_path, monkeypatch):
    files = {"a.mon": app("mode on_demand t2 { n = count() }", "od"),
             "b.mon": app("t3 { when tcp.syn { enable od for 10s } }", "watch")}
    assert _notes(tmp_path, monkeypatch, files) == []


def test_cli_check_notes_a_missing_asl_file(tmp_path):
    """Looked for where replay --asl looks: the current directory, then next to the spec."""
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "a.mon").write_text('app a {\n  t2 { n = count() }\n  asl "handlers/a.py"\n}\n')
    r = _xdpmon(["specs/a.mon"], tmp_path)
    memory_line, notes_line = r.stderr.splitlines()          # the first: compiler/memory.py's total
    assert (r.returncode, notes_line) == (0, "(1 note; --notes shows them)") and memory_line.startswith("(kernel memory ")
    r = _xdpmon(["--notes", "specs/a.mon"], tmp_path)
    r.stderr = r.stderr.split("\n", 1)[1]
    assert (r.returncode, r.stderr) == (0, "specs/a.mon:3:7: note: asl file 'handlers/a.py' not found (in the current "
                                           "directory or next to the spec); replay --asl runs the generated stub "
                                           "instead\n"
                                           '    asl "handlers/a.py"\n'
                                           "        ^^^^^^^^^^^^^^^\n")
    for where in (tmp_path / "handlers", tmp_path / "specs" / "handlers"):      # either place is found
        where.mkdir()
        (where / "a.py").write_text("")
        r = _xdpmon(["specs/a.mon"], tmp_path)
        assert r.returncode == 0 and r.stderr.startswith("(kernel memory ") and r.stderr.count("\n") == 1
        (where / "a.py").unlink()
        where.rmdir()


def test_cli_console_script_exists():
    script = ROOT / ".venv" / "bin" / "xdpmon"
    if not script.exists():
        pytest.skip("no .venv/bin/xdpmon (run make setup)")
    r = subprocess.run([str(script), "check", "specs/syn_flood.mon"], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("syn_flood: mode on_demand;")
