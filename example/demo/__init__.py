"""The rohrpost demo: a Django project with one live page, served by ``make demo``."""
