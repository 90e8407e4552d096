"""The wrapper kernel against a plain local ipykernel: the suite's groups 1-4 (see run.py).

    python benchmarks/kernel.py [--quick] [--n N]   # writes results/kernel.json
"""

if __name__ == "__main__":
    import runpy
    from pathlib import Path

    runpy.run_path(str(Path(__file__).with_name("run.py")))["subset"]("trivial,first_output,throughput,display", "kernel.json")
