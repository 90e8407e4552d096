"""Client round trips and session creation: the suite's groups 1, 2, 5 and 8 (see run.py).

    python benchmarks/roundtrip.py [--quick] [--no-sdk] [--n N]   # writes results/roundtrip.json
"""

if __name__ == "__main__":
    import runpy
    from pathlib import Path

    runpy.run_path(str(Path(__file__).with_name("run.py")))["subset"]("trivial,first_output,session_create,clients", "roundtrip.json")
