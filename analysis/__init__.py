"""The paper's analyses as one-command experiments: `xlmr-sweep --study NAME` runs a study,
`xlmr-report RUN_DIRS... --out DIR` turns its runs into a table, a JSON file and figures."""
