"""hierlatent: synthetic hierarchical corpora, Lightning training and mechanistic probes in one tool."""

__version__ = "0.1.0"
