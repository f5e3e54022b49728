"""Adapters for RAG frameworks: LangChain (``integrations.langchain``) and LlamaIndex
(``integrations.llamaindex``), over a local ``Collection`` or a vlsearch server's collection.

Each framework is an optional extra (``pip install 'vlsearch[langchain]'``, ``'vlsearch[llamaindex]'``);
importing an adapter without it raises ``MissingExtraError`` with that line. What the adapters
share (the remote collection, result metadata, model resolution) is in ``common``.
"""
