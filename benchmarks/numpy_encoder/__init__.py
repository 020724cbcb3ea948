"""The numpy sentence encoder that the built-in MiniLM and mpnet embedders ran on before.

Kept only as the embedding benchmark's baseline: `transformer.SentenceEncoder(folder, arch)`.
"""
