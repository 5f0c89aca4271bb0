"""``hierlatent plot``: the paper's figures (docs/research.md#figures) from fit runs and probe-olmo output.

Usage::

    hierlatent plot --runs logs/ngram logs/pcfg --olmo olmo_out --olmo_loss_csv olmo_loss.csv

Figures (PNG and PDF in ``--output_dir``), panels ordered N-gram | PCFG | OLMo | others:

- ``fig2_loss``: train/val loss vs step, reference losses as labelled dashed lines, loss minus reference below.
- ``fig3_induction``: k-order induction score, one line (mean over k) with the k-range as a band;
  ``fig3b_standard_induction``: standard (Olsson) induction, duplicate- and previous-token scores.
- ``fig4_hydra``: McGrath compensation (and headwise, when measured) with the paper's Δ beside it, the
  degenerate bias-free case detected and stated (``fig4b_hydra_k2``: the paper's Δ for k = 2).
- ``fig5a_function_vectors``: function-vector improvement, layer x step, hatched where the 95% CI holds 0.

``--sweep D`` (``D/<condition>/seed-<s>/``) plots one panel per condition, seed mean and 95% t-band; every
figure is also written as a tidy ``<name>.csv`` (`tidy`). More modules: `panels` (Panel, order, captions),
`heatmaps` (Fig. 4, 5a), `stats` (seed bands).

Modules: `cli` (flags, ``main``), `discover` (find runs, corpus labels), `sources` (TensorBoard events,
probe JSON, loss CSV), `data` (arrays for plotting), `figures` (one function per figure), `style` (paper
rcParams, step axes, atomic saving). How to read each figure and what each probe measures: docs/plot.md.
Nothing is imported eagerly: matplotlib and TensorBoard load only when a figure is drawn.
"""
