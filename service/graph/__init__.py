"""The repository graph: parse source files, link them, store the graph, query its impact."""
