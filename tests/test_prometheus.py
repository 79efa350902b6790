"""The Prometheus exporter (runtime/export/prometheus.py): families named by the
conventions, exact values from a replayed program, top keys with an ``other`` that keeps
the sums, and the HTTP endpoint of a running instance on a veth pair."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from engine_helpers import S, run, tcp, udp
from runtime.engines.reference.engine import ReferenceEngine
from runtime.export.prometheus import Collector
from runtime.export.scrape import ExportSettings, scrape
from spec_helpers import compile_text

SPEC = """app acct {
  t1 { select ip }
  t2 {
    per_dst = count() as packets, sum(pkt.len) as bytes, max(pkt.len) as biggest by ip.dst size 1024
    sizes = hist(pkt.len) by ip.proto
    syns = count() by ip.dst where tcp.syn window 1s
    flows = distinct(ip.src)
    seen = max(pkt.ts) as last by ip.dst
  }
  t3 { when per_dst.packets > param many = 1000 { alert "many" } }
}
"""


def samples(collector) -> dict:
    reg = CollectorRegistry()
    reg.register(collector)
    text = generate_latest(reg).decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out, text


def replayed(tmp_path, frames, settings=ExportSettings()):
    art = compile_text(tmp_path, SPEC)
    eng = ReferenceEngine(art)
    run(eng, frames, t0=S, step=1000)
    snap = scrape(art.manifest, eng.maps, S + 1_500_000_000, settings)    # in the next window: the last is complete
    status = {"program": {"id": 7, "apps": ["acct"]},
              "enabled": {"acct": {"mode": "always", "enabled": True, "until_ns": None}},
              "params": {"acct": {"many": 1000}}}
    snap["interfaces"] = {"mon": {"frames": len(frames), "bytes": 1}}
    return art.manifest, snap, status


def test_families_and_values(tmp_path):
    frames = ([udp(dst="198.19.0.1", pad=10)] * 3 + [tcp(dst="198.19.0.2")] * 2 +
              [udp(src="198.18.0.9", dst="198.19.0.1", pad=100)])
    w0 = time.time()
    view = replayed(tmp_path, frames)
    w1 = time.time()
    got, text = samples(Collector(lambda: view))
    L = lambda **kw: tuple(sorted(kw.items()))      # noqa: E731
    f1, f2, f3 = len(frames[0]), len(frames[3]), len(frames[5])
    assert got[("xdpmon_acct_per_dst_packets_total", L(ip_dst="198.19.0.1"))] == 4
    assert got[("xdpmon_acct_per_dst_bytes_total", L(ip_dst="198.19.0.1"))] == 3 * f1 + f3
    assert got[("xdpmon_acct_per_dst_biggest", L(ip_dst="198.19.0.2"))] == f2
    assert "# TYPE xdpmon_acct_per_dst_biggest gauge" in text
    assert "# TYPE xdpmon_acct_per_dst_packets_total counter" in text
    # the windowed count: a gauge of the last completed window (the frames were in it)
    assert got[("xdpmon_acct_syns_count", L(ip_dst="198.19.0.2"))] == 2
    assert "the last completed window of 1 s" in text
    # a histogram with log2 bounds: cumulative, +Inf = all
    b = {dict(k[1])["le"]: v for k, v in got.items()
         if k[0] == "xdpmon_acct_sizes_hist_pkt_len_bucket" and dict(k[1])["ip_proto"] == "17"}
    assert b["+Inf"] == 4 and b["31"] == 0 and b["63"] == 3 and b["127"] == 3 and b["255"] == 4
    assert b["0"] == 0 and b["65535"] == 4 and len(b) == 33 + 1      # pkt.len: 32 bits, 33 buckets
    assert got[("xdpmon_acct_sizes_hist_pkt_len_count", L(ip_proto="17"))] == 4     # the +Inf bucket
    # a full map's failures name the statistics it keeps
    fails = {k[1]: v for k, v in got.items() if k[0] == "xdpmon_map_insert_failures_total"}
    maps = {st["name"]: st["map"] for st in view[0]["apps"][0]["stats"]}
    assert fails == {L(map=maps["per_dst"], stats="acct.per_dst"): 0, L(map=maps["sizes"], stats="acct.sizes"): 0,
                     L(map=maps["syns"], stats="acct.syns,acct.seen"): 0, L(map=maps["flows"], stats="acct.flows"): 0}
    assert got[("xdpmon_acct_flows_distinct", L())] == 2
    # a max of pkt.ts is a time: Unix seconds (the program's clock read at the scrape is now)
    ago = (1_500_000_000 - 5 * 1000) / 1e9          # the last frame to 198.19.0.1, before the scrape's clock
    assert w0 - ago <= got[("xdpmon_acct_seen_last_timestamp_seconds", L(ip_dst="198.19.0.1"))] <= w1 - ago
    assert "# TYPE xdpmon_acct_seen_last_timestamp_seconds gauge" in text
    assert got[("xdpmon_frames_total", L())] == 6
    assert got[("xdpmon_parse_total", L(outcome="ok"))] == 6
    assert got[("xdpmon_verdicts_total", L(verdict="pass"))] == 6
    assert got[("xdpmon_interface_frames_total", L(interface="mon"))] == 6
    assert got[("xdpmon_rule_fired_total", L(app="acct", rule="r0"))] == 0
    assert got[("xdpmon_build_info", L(apps="acct", program_id="7"))] == 1
    assert got[("xdpmon_app_enabled", L(app="acct", mode="always"))] == 1
    assert got[("xdpmon_app_param", L(app="acct", param="many"))] == 1000


def test_top_keys_and_other_keep_the_sums(tmp_path):
    frames = [udp(dst=f"198.19.1.{i}") for i in range(1, 11) for _ in range(i)]     # 10 keys: 1..10 frames
    view = replayed(tmp_path, frames, ExportSettings(keys=3))
    got, _ = samples(Collector(lambda: view))
    rows = {dict(k[1])["ip_dst"]: v for k, v in got.items() if k[0] == "xdpmon_acct_per_dst_packets_total"}
    assert rows == {"198.19.1.10": 10, "198.19.1.9": 9, "198.19.1.8": 8, "other": sum(range(1, 8))}
    assert sum(rows.values()) == len(frames)
    big = {dict(k[1])["ip_dst"]: v for k, v in got.items() if k[0] == "xdpmon_acct_per_dst_biggest"}
    assert big["other"] == max(len(f) for f in frames)


def test_concurrent_scrapes_each_read_for_themselves(engine):
    """Scrapes in four threads at once, on the kernel's maps and the reference's: each reads
    the maps itself (scrape.py) and all give the same exposition."""
    import threading

    eng = engine(SPEC)
    frames = [udp(dst=f"198.19.1.{i % 150 + 1}", pad=i % 30) for i in range(600)]
    run(eng, frames, t0=S, step=1000)
    man = eng.manifest.raw
    col = Collector(lambda: (man, scrape(man, eng.maps, S + 1_500_000_000, ExportSettings(keys=10)),
                             {"program": {"id": 1, "apps": ["acct"]}, "enabled": {}, "params": {}}))
    texts, errors = [], []

    def scrape_some():
        try:
            for _ in range(5):
                texts.append(samples(col)[1])
        except Exception as e:          # noqa: BLE001 (reported below)
            errors.append(e)
    threads = [threading.Thread(target=scrape_some) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == [] and len(texts) == 20 and len(set(texts)) == 1
    got, _ = samples(col)
    assert sum(v for (n, _), v in got.items() if n == "xdpmon_acct_per_dst_packets_total") == 600


def test_blocklist_frames_operations_and_events_apart(tmp_path):
    man, snap, status = replayed(tmp_path, [udp()])
    snap["counters"].update({"blocklist.dropped": 7, "blocklist.logged": 2, "blocklist.added": 3,
                             "blocklist.refused_full": 1, "events.written": 12, "events.failed": 1})
    got, _ = samples(Collector(lambda: (man, snap, status)))
    assert {k[1]: v for k, v in got.items() if k[0] == "xdpmon_blocklist_frames_total"} == \
        {(("action", "dropped"),): 7, (("action", "logged"),): 2}
    assert {k[1]: v for k, v in got.items() if k[0] == "xdpmon_blocklist_operations_total"} == \
        {(("operation", "added"),): 3, (("operation", "refused_full"),): 1}
    assert {k[1]: v for k, v in got.items() if k[0] == "xdpmon_events_total"} == \
        {(("outcome", "written"),): 12, (("outcome", "failed"),): 1}


def test_describe_reads_nothing(tmp_path):
    view = replayed(tmp_path, [udp()])

    def never():
        raise AssertionError("describe() read the maps")
    names = {f.name for f in Collector(never, manifest=lambda: view[0]).describe()}
    assert {"xdpmon_acct_per_dst_packets", "xdpmon_acct_sizes_hist_pkt_len", "xdpmon_frames"} <= names


# ---- https ---------------------------------------------------------------------------------

def make_certs(d) -> dict:
    """A CA, a server certificate for 127.0.0.1 and a client certificate it signed (openssl)."""
    import subprocess as sp

    def ossl(*args):
        sp.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)
    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
         "-subj", "/CN=xdpmon test CA")
    for who, ext in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "extendedKeyUsage=clientAuth")):
        ossl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{who}.key", "-out", f"{who}.csr",
             "-subj", f"/CN=xdpmon test {who}")
        (d / f"{who}.ext").write_text(ext + "\n")
        ossl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", f"{who}.crt", "-days", "2", "-extfile", f"{who}.ext")
    return {k: str(d / f) for k, f in (("ca", "ca.crt"), ("cert", "server.crt"), ("key", "server.key"),
                                       ("client_cert", "client.crt"), ("client_key", "client.key"))}


@pytest.mark.kernel
def test_https_and_client_certificates(tmp_path):
    """metrics.tls: https only, and with client_ca only a scraper with a certificate it signed
    (in a network namespace of its own: its loopback only)."""
    import ssl
    import urllib.error

    from netns import sh
    from runtime.export.prometheus import serve
    from runtime.traffic.netns import in_netns

    c = make_certs(tmp_path)
    view = replayed(tmp_path, [udp()] * 3)
    ns = f"xmtls{os.getpid() % 100000}"
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        with in_netns(ns):
            server, _ = serve("127.0.0.1", 9418, Collector(lambda: view),
                              tls={"cert": c["cert"], "key": c["key"], "client_ca": c["ca"]})
            try:
                ctx = ssl.create_default_context(cafile=c["ca"])
                ctx.load_cert_chain(c["client_cert"], c["client_key"])
                text = urllib.request.urlopen("https://127.0.0.1:9418/metrics", context=ctx, timeout=10).read()
                assert b"xdpmon_frames_total 3.0" in text
                with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
                    urllib.request.urlopen("https://127.0.0.1:9418/metrics", timeout=10,
                                           context=ssl.create_default_context(cafile=c["ca"])).read()
                import http.client
                with pytest.raises((urllib.error.URLError, OSError, http.client.HTTPException)):
                    urllib.request.urlopen("http://127.0.0.1:9418/metrics", timeout=10).read()
            finally:
                server.shutdown()
                server.server_close()
            from runtime.export.prometheus import TLSError
            srl = c["ca"].replace("ca.crt", "ca.srl")
            with pytest.raises(TLSError, match=f"cert {srl} and key {c['key']}: not a PEM certificate and its "
                                               f"private key"):          # refused before anything listens
                serve("127.0.0.1", 9419, Collector(lambda: view), tls={"cert": srl, "key": c["key"]})
            with pytest.raises(TLSError, match=f"client_ca {srl}: no PEM certificate"):
                serve("127.0.0.1", 9419, Collector(lambda: view), tls={"cert": c["cert"], "key": c["key"],
                                                                       "client_ca": srl})
    finally:
        sh("ip", "netns", "del", ns)


# ---- a running instance ---------------------------------------------------------------------

@pytest.mark.kernel
def test_a_running_instance_serves_metrics(veth_pair, tmp_path):
    from test_run import ROOT, Running
    from runtime.traffic.netns import in_netns

    from netns import sh

    spec = tmp_path / "acct.mon"
    spec.write_text(SPEC)
    env = {"XDPMON_RUN_DIR": str(tmp_path / "run")}
    # where nothing can listen (the namespace's loopback is down): a clear refusal, exit 2
    p = veth_pair.run_in_monitor([sys.executable, "-m", "runtime.cli", "run", str(spec), "-i", veth_pair.MON_IF,
                                  "--name", "prom", "--view", "none", "--metrics", "127.0.0.1:9417"], cwd=ROOT,
                                 env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 2 and "xdpmon run: cannot serve metrics on 127.0.0.1:9417: Cannot assign requested " \
        "address" in err and "Traceback" not in err and "internal error" not in err
    sh("ip", "-n", veth_pair.mon_ns, "link", "set", "lo", "up")
    cfg = tmp_path / "deploy.yaml"
    config = ("specs: [acct.mon]\ninterfaces: [%s]\nname: prom\noutputs: {view: none}\n"
              "metrics:\n  listen: 127.0.0.1:9417\n  keys: 1\n  stats:\n    acct.sizes: {export: false}\n"
              % veth_pair.MON_IF)
    cfg.write_text(config)
    # https with a "certificate" that is none: refused at start, with the reason, exit 2
    (tmp_path / "bad.crt").write_text("not a certificate\n")
    cfg.write_text(config + "  tls: {cert: bad.crt, key: bad.crt}\n")
    p = veth_pair.run_in_monitor([sys.executable, "-m", "runtime.cli", "run", "--config", str(cfg)], cwd=ROOT,
                                 env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 2 and f"xdpmon run: cannot serve metrics on 127.0.0.1:9417: TLS: cert {tmp_path}/bad.crt " \
        f"and key {tmp_path}/bad.crt: not a PEM certificate and its private key (" in err and "Traceback" not in err, err
    cfg.write_text(config)
    r = Running(veth_pair, ["--config", str(cfg)], env)
    cenv = {**os.environ, **env, "PYTHONPATH": str(ROOT)}

    def scraped() -> dict:
        with in_netns(veth_pair.mon_ns):           # the exporter listens in the monitor's namespace
            text = urllib.request.urlopen("http://127.0.0.1:9417/metrics", timeout=10).read().decode()
        got = {}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                got[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return got

    try:
        from test_run import frame_v4
        t0 = time.time()
        n = veth_pair.send([frame_v4("198.18.77.1")] * 25 + [frame_v4("198.18.77.2")] * 5)
        t1 = time.time()
        time.sleep(0.3)
        got = scraped()
        assert n == 30
        # the program's monotonic clock, exported as Unix time (coarse: within a few ms)
        seen = got[("xdpmon_acct_seen_last_timestamp_seconds", (("ip_dst", "198.18.77.1"),))]
        assert t0 - 0.05 <= seen <= t1 + 0.05, (t0, seen, t1)
        # keys: 1 -- the largest destination, and the rest as "other"
        assert {k: v for k, v in got.items() if k[0] == "xdpmon_acct_per_dst_packets_total"} == \
            {("xdpmon_acct_per_dst_packets_total", (("ip_dst", "198.18.77.1"),)): 25,
             ("xdpmon_acct_per_dst_packets_total", (("ip_dst", "other"),)): 5}
        assert not any(k[0].startswith("xdpmon_acct_sizes") for k in got)          # export: false
        assert got[("xdpmon_interface_frames_total", (("interface", veth_pair.MON_IF),))] == 30
        assert got[("xdpmon_frames_total", ())] == 30
        p = subprocess.run([sys.executable, "-m", "runtime.cli", "ctl", "--name", "prom", "status", "--json"],
                           cwd=ROOT, capture_output=True, text=True, timeout=30, env=cenv)
        pid = json.loads(p.stdout)["program"]["id"]
        assert got[("xdpmon_build_info", (("apps", "acct"), ("program_id", str(pid))))] == 1
        # a reload changes what the next scrape exports
        cfg.write_text(config.replace("keys: 1", "keys: 5").replace("{export: false}", "{export: true}"))
        p = subprocess.run([sys.executable, "-m", "runtime.cli", "ctl", "--name", "prom", "reload"],
                           cwd=ROOT, capture_output=True, text=True, timeout=120, env=cenv)
        assert p.returncode == 0, p.stderr
        got = scraped()
        assert {k[1]: v for k, v in got.items() if k[0] == "xdpmon_acct_per_dst_packets_total"} == \
            {(("ip_dst", "198.18.77.1"),): 25, (("ip_dst", "198.18.77.2"),): 5}
        assert got[("xdpmon_acct_sizes_hist_pkt_len_bucket", (("ip_proto", "17"), ("le", "+Inf")))] == 30
    finally:
        r.signal(signal.SIGTERM)
        rc, _, err = r.finish()
    assert rc == 0, err
