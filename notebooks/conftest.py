"""The suite executes every notebook (nbmake) at test size: ``JRNN_NOTEBOOK_QUICK=1`` tells
the notebooks to train for a fraction of their steps; the committed outputs come from a full
run (``jupyter nbconvert --to notebook --execute --inplace notebooks/*.ipynb``)."""

import os

os.environ["JRNN_NOTEBOOK_QUICK"] = "1"
