"""Presentation: the figures and tables drawn from experiment results (the computations live in ``analyses/``).

- :mod:`.registry` — every figure: name → builder, inputs, the command that makes them (``make_figures --list``)
- :mod:`.sources`, :mod:`.builders` — where the inputs are, and the builders that read them
- :mod:`.token_explorer`, :mod:`.run_figures` — figures of one progressive run (the token explorer; the schematic
  and the horizon / IG bars), :mod:`.tokens` — the token and number helpers they share
- :mod:`.trajectory_figures`, :mod:`.eval_figures`, :mod:`.capacity_report` — per-analysis figures and tables
- :mod:`.tables` — the paper's tables (ours beside the paper's rows)
- :mod:`.io` — HTML (one shared ``plotly.min.js``) and PNG export (never hangs without a browser)
"""
