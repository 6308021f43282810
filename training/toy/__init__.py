"""Toy studies of "Examining Common Paradigms in Multi-Task Learning" (Elich et al., arXiv 2311.04698),
run with the project's own MTL methods (`training.mtl.build`), on a CPU in a few minutes.

- `cagrad`: the two-objective 2-D problem of the CAGrad paper (Liu et al., NeurIPS 2021): how many
  iterations plain gradient descent and Adam need, with EW / PCGrad / CAGrad and a grid of learning
  rates, to reach the minimum of the average loss from the official initial points.
- `scale`: loss-scale invariance (appendix A2 of the paradigms study): which updates of a tiny shared
  MLP with two regression heads change when the task losses are rescaled, for EW+SGD, EW+Adam,
  UW-O+SGD and one Adam per task, with a frozen and with a free backbone.

`python -m training toy cagrad|scale --help`; docs/toys.md shows the tables and figures.
"""
