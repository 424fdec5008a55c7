def pytest_configure(config):
    config.addinivalue_line('markers', 'browser: opens a notebook in JupyterLab in headless Chromium (deselect with -m "not browser")')
