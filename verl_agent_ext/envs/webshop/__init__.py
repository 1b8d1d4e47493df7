"""WebShop in pure Python: catalog (original schema or generated), BM25 search, the original reward, the env."""
