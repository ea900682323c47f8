"""nbval settings for the notebooks: compare only what is meant to be compared.

TensorFlow and tqdm write logs and progress bars to stderr, which differ between runs
and machines; they are never part of what a notebook teaches, so nbval ignores them.
"""


def pytest_collectstart(collector):
    if collector.fspath and collector.fspath.ext == ".ipynb":
        collector.skip_compare += ("stderr", "text/html", "application/javascript")
