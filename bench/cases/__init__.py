"""The cases of ``python -m bench``, one module per section: ``TITLE``,
``COLUMNS``, ``run(cfg, …, say) -> {"rows", "ratios", "targets", …}`` and the
case functions bench/test_bench_*.py call."""
