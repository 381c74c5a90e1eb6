"""The browser test's notebook is run by the browser test, not by nbval."""

collect_ignore_glob = ["*.ipynb"]
