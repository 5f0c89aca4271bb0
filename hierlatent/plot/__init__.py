"""``hierlatent plot``: the paper's figures (docs/research.md#figures) from fit runs and probe-olmo output.

Usage::

    hierlatent plot --runs logs/ngram logs/pcfg --olmo olmo_out --olmo_loss_csv olmo_loss.csv

Figures (PNG and PDF in ``--output_dir``), panels ordered N-gram | PCFG | OLMo | others:

- ``fig2_loss``: train/val loss vs step, reference losses as labelled dashed lines.
- ``fig3_induction``: k-order induction score for k = 1..10 vs step (y 0-1, sequential colours, colorbar);
  ``fig3b_standard_induction``: standard (Olsson) induction, duplicate- and previous-token scores.
- ``fig4_hydra``: Hydra compensation max(0, -delta) for k = 1, layer x step, one shared colour scale
  (``fig4b_hydra_k2`` for k = 2 when measured).
- ``fig5a_function_vectors``: function-vector improvement, layer x step (PCFG, or any run that has it).

Modules: `cli` (flags, ``main``), `discover` (find runs, corpus labels), `sources` (TensorBoard events,
probe JSON, loss CSV), `data` (arrays for plotting), `figures` (one function per figure), `style` (paper
rcParams, step axes, atomic saving). How to read each figure and what each probe measures: docs/plot.md.
Nothing is imported eagerly: matplotlib and TensorBoard load only when a figure is drawn.
"""
