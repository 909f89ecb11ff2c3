"""The offline mini world: emoji artwork from pinned npm packages turned into a sketch/photo retrieval dataset.

`sources` fetches the packages, `concepts` picks and splits the object concepts, `render` draws sketches and
photos, `world` writes the dataset to disk and `pretrain` trains the tiny CLIP backbone that SpLIP prompts.
"""
