"""Pretrain the tiny CLIP of the mini world, save it in open_clip's local-dir layout, and measure its gates.

The backbone is the standard `open_clip.model.CLIP` with the standard 49,408-token tokenizer (small widths keep
it small). It is trained only on the world's `pretrain/` pool: colour art of every concept (as web-scale CLIP has
seen every concept) rendered on the fly as photos, with captions built from the concept name, the icon's own name
and a style word ("a 3d render of a cat", "an emoji of a cat face"). No line, outline or sketch set ever enters
pretraining; edge maps of the colour art (`render.sketchify`) are an option (`edge_maps`, the fraction of each
batch) whose effect on SpLIP's gain is measured, off by default, so the sketch domain gap is left to the prompts.

Loss: symmetric image-text contrastive loss with every same-concept pair counted as positive, plus
cross-entropy of each image against the class texts of all concepts ("a photo of a {c}" for photos,
"a sketch of a {c}" for edge maps), which sharpens the concept-level alignment a 2-CPU budget can reach.

Gates, on the unseen concepts of the world's test set: photo->text top-1 over the unseen names, sketch->photo
mAP@all with the test drawers' sketches as queries (chance = mean fraction of relevant photos), and the ceiling:
the same ranking with each unseen concept's colour art (on white) as the query instead of a sketch.

CLI: `python -m splip_core.mini.pretrain --data ROOT --out OUT [--steps N] [--seed S] [--edge-maps F]`;
writes OUT/open_clip_config.json, OUT/open_clip_model.safetensors and OUT/report.json.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..names import folder_name
from ..preprocess import flatten_alpha
from ..towers import run_text
from . import render
from .doodles import read_bitmaps
from .extra import words
from .world import DOODLE_PREFIX, pretrain_doodles

IMAGE_SIZE = 64  # the input side of v3's backbone; a doodle's 28 pixels are upsampled to it
CONTEXT_LENGTH = 32
MEAN, STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]


def model_config(image_size: int = IMAGE_SIZE) -> dict:
    """The tiny CLIP's open_clip model config: patches of 8 pixels, so `image_size` must be a multiple of 8."""
    if image_size % 8:
        raise ValueError(f"image_size must be a multiple of the patch size 8, got {image_size}")
    return {"embed_dim": 128,
            "vision_cfg": {"image_size": image_size, "patch_size": 8, "width": 192, "layers": 4, "head_width": 64,
                           "mlp_ratio": 4.0},
            "text_cfg": {"context_length": CONTEXT_LENGTH, "vocab_size": 49408, "width": 64, "heads": 2,
                         "layers": 3}}


def preprocess_config(image_size: int = IMAGE_SIZE) -> dict:
    return {"size": image_size, "mode": "RGB", "mean": MEAN, "std": STD, "interpolation": "bicubic",
            "resize_mode": "shortest", "fill_color": 0}

PHOTO_TEMPLATES = ("a photo of a {}.", "a picture of a {}.", "an image of a {}.", "a {style} of a {}.",
                   "a {style} of a {}.", "a photo of a {} on a colourful background.", "a close-up photo of a {}.")
SKETCH_TEMPLATES = ("a sketch of a {}.", "a drawing of a {}.", "a line drawing of a {}.",
                    "a black and white drawing of a {}.", "a doodle of a {}.", "an outline drawing of a {}.")
DOODLE_TEMPLATES = ("a doodle of a {}.", "a sketch of a {}.", "a drawing of a {}.", "a quick sketch of a {}.",
                    "a hand-drawn {}.", "a simple drawing of a {}.")
STYLE_WORDS = ("illustration", "colourful drawing", "emoji", "cartoon", "clipart", "flat icon")
STYLE_3D = ("3d render", "3d model")


def fast_bf16(device: str = "cpu") -> bool:
    """Whether bfloat16 autocast speeds pretraining up on `device`: CUDA's own answer, or a CPU with bfloat16
    instructions (avx512_bf16 or amx_bf16). Without them a bf16 step was measured at ten times a float32 one."""
    if device.startswith("cuda"):
        return torch.cuda.is_bf16_supported()
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def _tokenizer():
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer(context_length=CONTEXT_LENGTH)


class Pool:
    """The pretraining images in memory. Colour art: premultiplied RGBA, label, set and caption words; line icons
    (a doodle world's clean line art of the train families): ink maps; doodles: 28x28 ink maps of the Quick, Draw!
    categories that are NOT concepts of the world (split.json's `doodles.pretrain_categories`), drawings
    0..USABLE-1 only. Labels: the world's concepts, then the doodle categories (`class_names`: both have class
    texts), then the extra art (extra.py), one label per distinct icon name."""

    def __init__(self, root: Path, extra: Path | None = None, doodles: Path | None = None,
                 seen_doodles: bool = False):
        root = Path(root)
        split = json.loads((root / "split.json").read_text())
        self.names: list[str] = split["seen"] + split.get("val", []) + split["unseen"]
        sources = pretrain_doodles(split, seen_doodles) if doodles else {}
        train = split.get("doodles", {}).get("train", 0)
        leaked = sorted(c for c, drawings in sources.items() if c in self.names and (
            c not in split["seen"] or max(drawings, default=0) >= train))
        if leaked:
            raise ValueError(f"only a seen concept's training doodles may reach pretraining, not those of {leaked}")
        self.doodle_names: list[str] = [c for c in sources if c not in self.names]
        self.class_names = self.names + self.doodle_names
        by_folder = {folder_name(n): n for n in self.names}
        arts, self.labels, self.styles, self.words = [], [], [], []
        lines, self.line_labels, self.line_words = [], [], []
        for entry in json.loads((root / "manifest.json").read_text()):
            if entry["split"] != "pretrain":
                continue
            name = by_folder[Path(entry["path"]).parent.name]
            rgba = render.to_tensor(np.asarray(Image.open(root / entry["path"]).convert("RGBA")))
            if entry["domain"] == "line":
                lines.append(render.ink_of(rgba[None])[0])
                self.line_labels.append(self.names.index(name))
                self.line_words.append((name, words(entry["icon"])))
                continue
            arts.append(rgba)
            self.labels.append(self.names.index(name))
            self.styles.append(entry["set"])
            self.words.append((name, words(entry["icon"])))
        self.lines = torch.stack(lines) if lines else torch.zeros(0, 1, 1, 1)
        self.doodle_sources = [(c, i) for c, drawings in sources.items() for i in drawings]  # (category, drawing)
        bitmaps = [torch.from_numpy(read_bitmaps(doodles, c, drawings)) for c, drawings in sources.items()]
        self.doodles = torch.cat(bitmaps)[:, None] if bitmaps else torch.zeros(0, 1, 28, 28)
        self.doodle_labels = [self.class_names.index(c) for c, _ in self.doodle_sources]
        extra_labels: dict[str, int] = {}
        if extra is not None:
            for entry in json.loads((Path(extra) / "manifest.json").read_text())["items"]:
                arts.append(render.to_tensor(np.asarray(Image.open(Path(extra) / entry["path"]).convert("RGBA"))))
                label = extra_labels.setdefault(entry["label"], len(extra_labels))
                self.labels.append(len(self.class_names) + label)
                self.styles.append(entry["set"])
                self.words.append((entry["label"], entry["label"]))
        self.art = torch.stack(arts)
        self.by_label = [[] for _ in range(len(self.class_names) + len(extra_labels))]
        for i, y in enumerate(self.labels):
            self.by_label[y].append(i)
        self.extra_labels = len(extra_labels)


def caption(rng: random.Random, names: tuple[str, str], style: str, sketch: bool) -> str:
    """A caption for one rendered artwork: a domain/style template and the concept name or, for Iconify names
    that are words (not hexcodes), sometimes the icon's own name ("cat face")."""
    name, icon = names
    text = rng.choice(SKETCH_TEMPLATES if sketch else PHOTO_TEMPLATES)
    subject = icon if rng.random() < 0.3 and not any(ch.isdigit() for ch in icon) else name
    return text.format(subject, style=rng.choice(STYLE_3D if "3d" in style else STYLE_WORDS))


def build_model(seed: int, image_size: int = IMAGE_SIZE):
    """A freshly initialised tiny open_clip CLIP (seeded)."""
    from open_clip.model import CLIP

    cfg = model_config(image_size)
    torch.manual_seed(seed)
    return CLIP(cfg["embed_dim"], cfg["vision_cfg"], cfg["text_cfg"])


def _normalize(images: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (images - mean) / std


def batch(pool: Pool, gen: torch.Generator, rng: random.Random, size: int, edge_maps: float = 0.0,
          extra_fraction: float = 0.0, line_fraction: float = 0.0, doodle_fraction: float = 0.0,
          px: int = IMAGE_SIZE, stroke_jitter: float = 0.0):
    """A class-balanced batch of `px`-pixel images: (images, caption strings, labels, is_sketch); a fraction
    `edge_maps` of the images are edge-map "sketches" of the colour art, a fraction `extra_fraction` are extra art
    (balanced over its names), and, after those, a fraction `line_fraction` of the batch are line icons and
    `doodle_fraction` doodles, whose strokes are thickened or thinned by up to `stroke_jitter` (render.stroke_width)."""
    n_line = round(line_fraction * size) if len(pool.lines) else 0
    n_doodle = round(doodle_fraction * size) if len(pool.doodles) else 0
    size -= n_line + n_doodle
    labels = torch.randint(len(pool.names), (size,), generator=gen)
    if extra_fraction and pool.extra_labels:
        pick = torch.rand(size, generator=gen) < extra_fraction
        labels[pick] = len(pool.class_names) + torch.randint(pool.extra_labels, (int(pick.sum()),), generator=gen)
    idx = torch.tensor([pool.by_label[y][torch.randint(len(pool.by_label[y]), (1,), generator=gen).item()]
                        for y in labels.tolist()])
    sketch = torch.rand(size, generator=gen) < edge_maps
    images = torch.empty(size, 3, px, px)
    if sketch.any():
        images[sketch] = render.sketchify(pool.art[idx[sketch]], gen, px)
    images[~sketch] = render.photos(pool.art[idx[~sketch]], gen, px)
    texts = [caption(rng, pool.words[i], pool.styles[i], bool(s))
             for i, s in zip(idx.tolist(), sketch.tolist(), strict=True)]
    if n_line:
        pick = torch.randint(len(pool.lines), (n_line,), generator=gen)
        ink = pool.lines[pick]
        small = (torch.rand(n_line, generator=gen) < 0.5).view(-1, 1, 1, 1)  # half through a doodle's 28 pixels
        coarse = F.interpolate(F.interpolate(ink, size=28, mode="area"), size=ink.shape[-1], mode="bicubic",
                               align_corners=False).clamp(0, 1)
        ink = render.line_augment(torch.where(small, coarse, ink), gen, px, jitter=0.01, erase=0.1)
        images = torch.cat([images, render.ink_to_rgb(ink)])
        texts += [caption(rng, pool.line_words[i], "", True) for i in pick.tolist()]
        labels = torch.cat([labels, torch.tensor([pool.line_labels[i] for i in pick.tolist()])])
    if n_doodle:
        pick = torch.randint(len(pool.doodles), (n_doodle,), generator=gen)
        ink = F.interpolate(pool.doodles[pick], size=px, mode="bicubic", align_corners=False).clamp(0, 1)
        ink = render.affine(ink, gen, px, scale=(0.9, 1.05), rotate=6.0, shift=0.05)
        if stroke_jitter:
            ink = render.stroke_width(ink, gen, stroke_jitter)
        images = torch.cat([images, render.ink_to_rgb(ink)])
        doodle_labels = [pool.doodle_labels[i] for i in pick.tolist()]
        texts += [rng.choice(DOODLE_TEMPLATES).format(pool.class_names[y]) for y in doodle_labels]
        labels = torch.cat([labels, torch.tensor(doodle_labels)])
    sketch = torch.cat([sketch, torch.ones(n_line + n_doodle, dtype=torch.bool)])
    return _normalize(images), texts, labels, sketch


def encode_text(model, tokens: torch.Tensor) -> torch.Tensor:
    """open_clip's `encode_text` over the tokens up to the longest EOT only: the causal mask makes the rest
    padding, and the class-name pass over every concept is a third of a step at the full context."""
    eot = tokens.argmax(-1)  # the EOT id is the largest in the vocabulary, as open_clip's argmax pooling assumes
    tokens = tokens[:, : int(eot.max()) + 1]
    return run_text(model, model.token_embedding(tokens), eot)[0]


def losses(model, images, tokens, labels, sketch, class_tokens):
    """(multi-positive image-text contrastive loss, class-name cross-entropy)."""
    img = F.normalize(model.encode_image(images), dim=-1)
    txt = F.normalize(encode_text(model, tokens), dim=-1)
    scale = model.logit_scale.exp().clamp(max=100)
    same = (labels[:, None] == labels[None, :]).float()
    target = same / same.sum(1, keepdim=True)
    logits = scale * img @ txt.T
    clip = -(target * logits.log_softmax(1)).sum(1).mean() / 2 - (target * logits.T.log_softmax(1)).sum(1).mean() / 2
    n = len(class_tokens) // 2
    cls = F.normalize(encode_text(model, class_tokens), dim=-1)
    world = labels < n  # the class-name cross-entropy is over the world's concepts; extra art has no class text
    if not world.any():
        return clip, img.sum() * 0.0
    proto = torch.where(sketch[world, None, None], cls[n:][None], cls[:n][None])
    ce = F.cross_entropy(scale * torch.einsum("bd,bcd->bc", img[world], proto), labels[world])
    return clip, ce


def pretrain(data: Path, steps: int, seed: int = 0, batch_size: int = 128, lr: float = 1e-3,
             weight_decay: float = 0.05, log_every: int = 50, device: str = "cpu", edge_maps: float = 0.0,
             extra: Path | None = None, extra_fraction: float = 0.0, init: Path | None = None,
             doodles: Path | None = None, line_fraction: float = 0.0, doodle_fraction: float = 0.0,
             bf16: bool = False, seen_doodles: bool = False, image_size: int = IMAGE_SIZE,
             stroke_jitter: float = 0.0):
    """Train the tiny CLIP on `data/pretrain` (and a fraction `extra_fraction` of each batch from the extra art
    in `extra`; in a doodle world fractions `line_fraction` of line icons and `doodle_fraction` of the doodles in
    the package folder `doodles`, with the seen concepts' training doodles among them when `seen_doodles`) for
    `steps` steps at `image_size` pixels; deterministic given the seed (and device). `init`: continue from a saved
    backbone (a new warm-up and cosine schedule; its image size wins) instead of a fresh initialisation. `bf16`: the
    forward pass under bfloat16 autocast (CPUs with bf16 instructions run a step about twice as fast).

    Batches are rendered on the CPU with a seeded generator whatever the device, so a GPU run sees the same data.
    """
    if not 0.0 <= extra_fraction < 1.0:
        raise ValueError(f"extra_fraction must be in [0, 1), got {extra_fraction}")
    if not 0.0 <= line_fraction + doodle_fraction < 1.0:
        raise ValueError(f"line_fraction + doodle_fraction must be in [0, 1), got {line_fraction + doodle_fraction}")
    pool = Pool(data, extra if extra_fraction else None, doodles if doodle_fraction else None, seen_doodles)
    tokenizer = _tokenizer()
    if init is not None:
        from safetensors.torch import load_file

        image_size = json.loads((Path(init) / "open_clip_config.json").read_text())["model_cfg"]["vision_cfg"][
            "image_size"]
        model = build_model(seed, image_size)
        model.load_state_dict(load_file(str(Path(init) / "open_clip_model.safetensors")))
    else:
        model = build_model(seed, image_size)
    model = model.to(device)
    gen = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    class_tokens = tokenizer([f"a photo of a {c}." for c in pool.class_names] +
                             [f"a sketch of a {c}." for c in pool.class_names]).to(device)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.98), eps=1e-6)
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warmup if s < warmup else 0.5 * (1 + math.cos(math.pi * (s - warmup) /
                                                                               max(1, steps - warmup))))
    model.train()
    t0 = time.time()
    for step in range(steps):
        images, texts, labels, sketch = batch(pool, gen, rng, batch_size, edge_maps, extra_fraction,
                                              line_fraction, doodle_fraction, image_size, stroke_jitter)
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
            clip, ce = losses(model, images.to(device), tokenizer(texts).to(device), labels.to(device),
                              sketch.to(device), class_tokens)
        clip, ce = clip.float(), ce.float()
        opt.zero_grad(set_to_none=True)
        (clip + ce).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if log_every and (step % log_every == 0 or step == steps - 1):
            print(f"step {step}/{steps} clip {clip.item():.3f} ce {ce.item():.3f} "
                  f"scale {model.logit_scale.exp().item():.1f} {time.time() - t0:.0f}s", flush=True)
    return model.cpu().eval()


def save(model, out: Path) -> None:
    """Write OUT/open_clip_config.json and OUT/open_clip_model.safetensors (fp32), loadable with
    `open_clip.create_model("local-dir:OUT")`."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    size = model.visual.image_size
    size = size if isinstance(size, int) else size[0]  # open_clip keeps an int or a pair
    (out / "open_clip_config.json").write_text(json.dumps(
        {"model_cfg": model_config(size), "preprocess_cfg": preprocess_config(size)}, indent=1))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "open_clip_model.safetensors"))


def _load_split(root: Path, split: str, domain: str, folders: dict[str, int]):
    paths, labels = [], []
    for name, label in folders.items():
        for p in sorted((root / split / domain / name).glob("*")):
            paths.append(p)
            labels.append(label)
    return paths, torch.tensor(labels)


@torch.no_grad()
def _embed_images(model, preprocess, paths, chunk: int = 256) -> torch.Tensor:
    out = []
    for i in range(0, len(paths), chunk):
        x = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in paths[i:i + chunk]])
        out.append(F.normalize(model.encode_image(x), dim=-1))
    return torch.cat(out)


def mean_average_precision(sims: torch.Tensor, q_labels: torch.Tensor, g_labels: torch.Tensor) -> float:
    """mAP@all: mean over queries of the average precision of the full ranking."""
    order = sims.argsort(dim=1, descending=True)
    rel = (g_labels[order] == q_labels[:, None]).float()
    ranks = torch.arange(1, rel.shape[1] + 1).float()
    ap = (rel.cumsum(1) / ranks * rel).sum(1) / rel.sum(1).clamp(min=1)
    return ap.mean().item()


def names_gate(model, tokenizer, split: dict, val: tuple, unseen: tuple) -> dict:
    """Does the frozen backbone read a doodle as its concept's name? Each doodle's top-1 over the whole vocabulary
    (every world concept and pretraining category), the validation and the unseen doodles. `val`, `unseen`: (doodle
    features, labels, the concepts the labels index)."""
    vocab = split["seen"] + split["val"] + split["unseen"] + split.get("doodles", {}).get("pretrain_categories", [])
    text = F.normalize(model.encode_text(tokenizer([f"a sketch of a {c}." for c in vocab])), dim=-1)
    out = {}
    for name, (q, q_lab, concepts) in (("val", val), ("unseen", unseen)):
        target = torch.tensor([vocab.index(concepts[i]) for i in q_lab.tolist()])
        out[f"{name}_doodle_vocab_top1"] = round(((q @ text.T).argmax(1) == target).float().mean().item(), 4)
    return out


@torch.no_grad()
def gate(model_dir: Path, data: Path) -> dict:
    """Gate (a) and companion numbers of a saved backbone on the world's test set (frozen model, no prompts)."""
    import open_clip

    data = Path(data)
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{model_dir}")
    model.eval()
    tokenizer = open_clip.get_tokenizer(f"local-dir:{model_dir}")
    split = json.loads((data / "split.json").read_text())
    unseen = {folder_name(c): i for i, c in enumerate(split["unseen"])}
    s_paths, s_lab = _load_split(data, "test", "sketch", unseen)
    p_paths, p_lab = _load_split(data, "test", "photo", unseen)
    sk, ph = _embed_images(model, preprocess, s_paths), _embed_images(model, preprocess, p_paths)

    def text(template):
        return F.normalize(model.encode_text(tokenizer([template.format(c) for c in split["unseen"]])), dim=-1)

    photo_top1 = ((ph @ text("a photo of a {}.").T).argmax(1) == p_lab).float().mean().item()
    sketch_text = text("a sketch of a {}.")
    sketch_top1 = ((sk @ sketch_text.T).argmax(1) == s_lab).float().mean().item()
    zs_map = mean_average_precision(sk @ ph.T, s_lab, p_lab)
    by_domain = {}  # a doodle world's two sketch domains apart: Quick, Draw! doodles and the test families' icons
    doodle = torch.tensor([p.name.startswith(DOODLE_PREFIX) for p in s_paths], dtype=torch.bool)
    for domain, keep in (("doodle", doodle), ("icon_sketch", ~doodle)):
        if doodle.any() and keep.any():
            by_domain[f"unseen_{domain}_text_top1"] = round(
                ((sk[keep] @ sketch_text.T).argmax(1) == s_lab[keep]).float().mean().item(), 4)
            by_domain[f"unseen_{domain}_photo_map_all"] = round(
                mean_average_precision(sk[keep] @ ph.T, s_lab[keep], p_lab), 4)
            by_domain[f"{domain}_queries"] = int(keep.sum())
    if split.get("val") and doodle.any():  # what a backbone is chosen on: validation doodles (seen side), not unseen
        val = {folder_name(c): i for i, c in enumerate(split["val"])}
        (v_paths, v_lab), (vp_paths, vp_lab) = (_load_split(data, "val", d, val) for d in ("sketch", "photo"))
        vs, vp = _embed_images(model, preprocess, v_paths), _embed_images(model, preprocess, vp_paths)
        v_text = F.normalize(model.encode_text(tokenizer([f"a sketch of a {c}." for c in split["val"]])), dim=-1)
        by_domain["val_doodle_photo_map_all"] = round(mean_average_precision(vs @ vp.T, v_lab, vp_lab), 4)
        by_domain["val_doodle_text_top1"] = round(((vs @ v_text.T).argmax(1) == v_lab).float().mean().item(), 4)
        by_domain.update(names_gate(model, tokenizer, split, (vs, v_lab, split["val"]),
                                    (sk[doodle], s_lab[doodle], split["unseen"])))
    # the ceiling: each unseen concept's pretraining colour art, flattened on white, as the query
    c_paths = [p for p in sorted((data / "pretrain").glob("*/*.png")) if p.parent.name in unseen]
    c_lab = torch.tensor([unseen[p.parent.name] for p in c_paths])
    colour = []
    for i in range(0, len(c_paths), 256):
        x = torch.stack([preprocess(flatten_alpha(Image.open(p))) for p in c_paths[i:i + 256]])
        colour.append(F.normalize(model.encode_image(x), dim=-1))
    ceiling = mean_average_precision(torch.cat(colour) @ ph.T, c_lab, p_lab)
    chance = (p_lab[None, :] == s_lab[:, None]).float().mean(1).mean().item()
    # FG: each sketch against the photos of its own concept; the true photo is <instance>.jpg
    hits = []
    for i, p in enumerate(s_paths):
        same = [j for j, q in enumerate(p_paths) if q.parent.name == p.parent.name]
        true = [j for j in same if p_paths[j].stem == p.stem.rsplit("-", 1)[0]]
        if true:
            hits.append(same[int((sk[i] @ ph[same].T).argmax())] == true[0])
    return {
        "unseen_concepts": len(unseen), "test_sketches": len(s_paths), "test_photos": len(p_paths),
        "unseen_photo_text_top1": round(photo_top1, 4), "chance_photo_text_top1": round(1 / len(unseen), 4),
        "unseen_sketch_text_top1": round(sketch_top1, 4),
        "unseen_sketch_photo_map_all": round(zs_map, 4), "chance_map_all": round(chance, 4),
        "unseen_colour_art_photo_map_all": round(ceiling, 4), "colour_art_queries": len(c_paths),
        "unseen_fg_acc1": round(float(np.mean(hits)), 4) if hits else None, "fg_queries": len(hits),
        "gate_a_passed": photo_top1 >= 0.4 and zs_map >= 2 * chance, **by_domain,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Pretrain the mini world's tiny CLIP and report gate (a).")
    parser.add_argument("--data", type=Path, required=True, help="world root written by splip_core.mini.world")
    parser.add_argument("--out", type=Path, required=True, help="backbone folder (open_clip local-dir layout)")
    parser.add_argument("--steps", type=int, default=1500, help="optimiser steps")
    parser.add_argument("--edge-maps", type=float, default=0.0, help="fraction of each batch drawn as edge maps")
    parser.add_argument("--extra", type=Path, help="extra colour art rendered by splip_core.mini.extra")
    parser.add_argument("--extra-fraction", type=float, default=0.0, help="fraction of each batch from --extra")
    parser.add_argument("--doodles", type=Path, help="the doodle package's folder (a doodle world's pretraining)")
    parser.add_argument("--line-fraction", type=float, default=0.0, help="fraction of each batch from line icons")
    parser.add_argument("--doodle-fraction", type=float, default=0.0,
                        help="fraction of each batch from doodles of categories outside the world")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast in the forward pass")
    parser.add_argument("--init", type=Path, help="continue from this saved backbone instead of a fresh one")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="torch device for the model (batches render on the CPU)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    steps = args.steps
    t0 = time.time()
    model = pretrain(args.data, steps, args.seed, args.batch_size, device=args.device, edge_maps=args.edge_maps,
                     extra=args.extra, extra_fraction=args.extra_fraction, init=args.init, lr=args.lr,
                     doodles=args.doodles, line_fraction=args.line_fraction, doodle_fraction=args.doodle_fraction,
                     bf16=args.bf16)
    t1 = time.time()
    save(model, args.out)
    report = gate(args.out, args.data)
    report.update({"steps": steps, "edge_maps": args.edge_maps, "extra_fraction": args.extra_fraction,
                   "line_fraction": args.line_fraction, "doodle_fraction": args.doodle_fraction, "bf16": args.bf16,
                   "init": str(args.init) if args.init else None, "lr": args.lr,
                   "batch_size": args.batch_size, "seed": args.seed,
                   "device": args.device,
                   "pretrain_s": round(t1 - t0, 1), "gate_s": round(time.time() - t1, 1),
                   "size_bytes": (args.out / "open_clip_model.safetensors").stat().st_size})
    (args.out / "report.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
