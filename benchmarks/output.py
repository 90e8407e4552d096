"""Groups 3 and 4, per kernel: output throughput and a 1 MB PNG display.

3. ~10 MB of stdout as 200,000 short lines, and as one 10 MB line (each cell run 3 times, 1 with
   --quick; the median run is reported): seconds to reply+idle, MB/s, whether the text arrived
   exactly and in order, and the peak RSS (sampled every 50 ms; the worst run's) of the kernel
   and, for the wrapper, of the server and the session's kernel.  Targets: ≥ 50% of the
   local ipykernel's MB/s, and memory bounded (peak growth < 100 MB per process for 10 MB).
4. ``display(Image(data=png))`` of a ~1 MB valid PNG (random pixels, so incompressible) built in
   the kernel by an untimed set-up cell: request to the arrival of the ``display_data``; the
   image's bytes are checked against the SHA-256 the cell prints.  And a 1.1 MB HTML table
   (24,000 rows) through the display adapter: request to its ``display_data``, checked whole.
"""

from __future__ import annotations

import base64
import hashlib

from .common import (
    CellRun,
    KernelDriver,
    PeakSampler,
    Probes,
    Row,
    p50_p95,
    rate,
    ratio,
    summarize,
)

THROUGHPUT_SHARE = 0.5
RSS_GROWTH_BOUND_MB = 100.0
CELLS = {
    "lines": ("10 MB in 200,000 lines", "for i in range(200000): print(f'{i:08d} ' + 'x'*41)",
              lambda: "".join(f"{i:08d} " + "x" * 41 + "\n" for i in range(200000))),
    "bigline": ("one 10 MB line", "print('y'*10_000_000)", lambda: "y" * 10_000_000 + "\n"),
}

PNG_SETUP = """\
import hashlib as _hl, os as _os, struct as _st, zlib as _zl
def _chunk(kind, data):
    return _st.pack('>I', len(data)) + kind + data + _st.pack('>I', _zl.crc32(kind + data))
_w = _h = 592
_raw = b''.join(b'\\x00' + _os.urandom(_w * 3) for _ in range(_h))
_png = (b'\\x89PNG\\r\\n\\x1a\\n' + _chunk(b'IHDR', _st.pack('>IIBBBBB', _w, _h, 8, 2, 0, 0, 0))
        + _chunk(b'IDAT', _zl.compress(_raw, 1)) + _chunk(b'IEND', b''))
_png_sig = f'{len(_png)} {_hl.sha256(_png).hexdigest()}'
"""
PNG_CODE = "from IPython.display import Image, display; display(Image(data=_png)); print(_png_sig)"


def throughput(drivers: dict[str, KernelDriver], probes: dict[str, Probes], runs: int = 1) -> dict:
    """Each output cell ``runs`` times on each kernel in turn (RSS of the kernel's processes sampled
    meanwhile); the run with the median time is reported, exact only if every run was."""
    out: dict[str, dict] = {key: {} for key in drivers}
    for cell, (_, code, expected_text) in CELLS.items():
        expected = expected_text()
        measured: dict[str, list[dict]] = {key: [] for key in drivers}
        for _ in range(runs):
            for key, driver in drivers.items():
                with PeakSampler(probes[key]) as rss:
                    run = driver.run(code, timeout=300)
                text = run.stdout()
                measured[key].append({
                    **rate(run.seconds, len(expected)), "status": run.status, "idle": run.idle,
                    "stream_messages": len(run.streams), "bytes_expected": len(expected),
                    "bytes_received": len(text), "exact": text == expected,
                    "first_stream_s": round(run.streams[0][0], 3) if run.streams else None, "rss": rss.result()})
        for key, results in measured.items():
            median = sorted(results, key=lambda r: r["seconds"])[len(results) // 2]
            out[key][cell] = {**median, "runs": len(results), "seconds_all": [r["seconds"] for r in results],
                              "exact": all(throughput_ok(r) for r in results),
                              "rss": {name: max((r["rss"][name] for r in results), key=lambda v: v["growth_mb"])
                                      for name in probes[key]}}
    return out


def png_display(drivers: dict[str, KernelDriver], runs: int, warmup: int = 1) -> dict:
    """Request to display_data of the PNG per kernel; runs interleaved."""
    times: dict[str, list[float]] = {key: [] for key in drivers}
    sizes, match = {}, {key: True for key in drivers}
    for d in drivers.values():
        d.run_ok(PNG_SETUP, timeout=60)
    for i in range(warmup + runs):
        for key, d in drivers.items():
            run = d.run_ok(PNG_CODE, timeout=60)
            arrived, data = _png_display(run)
            got = base64.b64decode(data)
            match[key] = match[key] and run.stdout().split() == [str(len(got)), hashlib.sha256(got).hexdigest()]
            sizes[key] = len(got)
            if i >= warmup:
                times[key].append(arrived)
    return {key: {**summarize(t, samples=True), "png_bytes": sizes[key], "bytes_match": match[key]}
            for key, t in times.items()}


def _png_display(run: CellRun) -> tuple[float, str]:
    for t, bundle in run.displays:
        if "image/png" in bundle:
            return t, bundle["image/png"]
    raise RuntimeError(f"no display_data with image/png (got {[sorted(b) for _, b in run.displays]})")


def throughput_ok(r: dict) -> bool:
    return r["status"] == "ok" and r["idle"] and r["exact"]


def memory_ok(r: dict) -> bool:
    return all(v["growth_mb"] < RSS_GROWTH_BOUND_MB for v in r["rss"].values())


def throughput_rows(results: dict, labels: dict[str, str]) -> list[Row]:
    rows = []
    for cell, (title, _, _) in CELLS.items():
        floor = results.get("local", {}).get(cell, {}).get("mb_per_s")
        for key, per_kernel in results.items():
            r = per_kernel[cell]
            exact = "exact" if throughput_ok(r) else f"NOT EXACT ({r['bytes_received']:,} of {r['bytes_expected']:,} B)"
            rss = ", ".join(f"{name} {v['before_mb']:.0f}→{v['peak_mb']:.0f}" for name, v in r["rss"].items())
            wrapper = key != "local"
            share = r["mb_per_s"] / floor if floor else None
            rows.append(Row(
                "3", f"{title} — {labels[key]}", r["runs"],
                f"{r['seconds']:.2f} s, {r['mb_per_s']:.1f} MB/s, {exact}; peak RSS MB {rss}",
                f"{share:.0%}" if share is not None else "",
                f"≥ {THROUGHPUT_SHARE:.0%} of local MB/s; RSS growth < {RSS_GROWTH_BOUND_MB:.0f} MB" if wrapper
                else f"RSS growth < {RSS_GROWTH_BOUND_MB:.0f} MB",
                throughput_ok(r) and memory_ok(r) and (share is None or not wrapper or share >= THROUGHPUT_SHARE),
            ))
    return rows


def png_rows(results: dict, labels: dict[str, str]) -> list[Row]:
    floor = results.get("local", {}).get("p50_ms")
    rows = []
    for key, r in results.items():
        rows.append(Row("4", f"1 MB PNG `display(Image(...))` to display_data — {labels[key]}", r["n"],
                        f"{p50_p95(r)} ({r['png_bytes']:,} B, {'bytes match' if r['bytes_match'] else 'BYTES DIFFER'})",
                        ratio(r["p50_ms"], floor), "image arrives intact", r["bytes_match"]))
    return rows



HTML_ROWS = 24_000
HTML_SETUP = ("_rows = ''.join(f'<tr><td>{i:07d}</td><td>{i * i:012d}</td></tr>' for i in range(%d))\n"
              "_table = '<table>' + _rows + '</table>'" % HTML_ROWS)
HTML_CODE = "from IPython.display import HTML, display; display(HTML(_table))"


def html_display(drivers: dict[str, KernelDriver], runs: int, warmup: int = 1) -> dict:
    """Request to the display_data of a 1.1 MB HTML table per kernel; runs interleaved."""
    times: dict[str, list[float]] = {key: [] for key in drivers}
    whole = {key: True for key in drivers}
    for d in drivers.values():
        d.run_ok(HTML_SETUP, timeout=60)
    for i in range(warmup + runs):
        for key, d in drivers.items():
            run = d.run_ok(HTML_CODE, timeout=60)
            arrived, html = next(((t, b["text/html"]) for t, b in run.displays if "text/html" in b), (None, ""))
            if arrived is None:
                raise RuntimeError(f"no display_data with text/html (got {[sorted(b) for _, b in run.displays]})")
            whole[key] = whole[key] and html.count("<tr>") == HTML_ROWS and len(html) > 1_000_000
            if i >= warmup:
                times[key].append(arrived)
    return {key: {**summarize(t, samples=True), "whole": whole[key]} for key, t in times.items()}


def html_rows(results: dict, labels: dict[str, str]) -> list[Row]:
    floor = results.get("local", {}).get("p50_ms")
    return [Row("4", f"1.1 MB HTML table `display(HTML(...))` to display_data — {labels[key]}", r["n"],
                f"{p50_p95(r)} ({'whole' if r['whole'] else 'NOT WHOLE'})", ratio(r["p50_ms"], floor),
                "table arrives whole", r["whole"]) for key, r in results.items()]
