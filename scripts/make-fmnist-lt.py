#!/usr/bin/python3
"""Build the bundled long-tailed Fashion-MNIST demo data for `otlm demo`.

What it does (every step seeded, so a rerun reproduces the files):
  1. Reads the Debian package `dataset-fashion-mnist` (IDX files, gzip).
  2. Subsamples the 60,000-image training split to an exponential long-tailed
     profile n_c = floor(n_max * (1/rho)^(c/(K-1))), rho = 100, n_max = 6000,
     classes in their natural Fashion-MNIST order (class 0 is the head,
     class 9 the tail), images of each class drawn without replacement.
  3. Trains a small CNN with plain cross-entropy (no re-weighting), so the
     classifier is head-biased -- the bias the post-hoc methods correct.
  4. Splits the balanced 10,000-image test split, stratified, into a
     validation half and a test half (500 per class each), and writes the
     logits, labels and training counts as .npy plus PROVENANCE.md.

Run with Debian's python3 (python3-torch, python3-numpy):
    /usr/bin/python3 scripts/make-fmnist-lt.py [--out data/fmnist-lt]
"""
import argparse
import gzip
import hashlib
import os
import platform
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

SRC_DIR = '/usr/share/datasets/fashion-mnist'
CLASS_NAMES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat',
               'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot']
K = 10
N_MAX = 6000
RHO = 100
SEED_SUBSAMPLE = 20220125
SEED_SPLIT = 20220126
SEED_TORCH = 20220127
EPOCHS = 6
BATCH = 128
LR = 1e-3


def read_idx(path, expect_magic):
    """Read a gzip IDX file (big-endian header: magic, dims), checking sizes."""
    with gzip.open(path, 'rb') as fh:
        raw = fh.read()
    magic = int.from_bytes(raw[0:4], 'big')
    if magic != expect_magic:
        raise SystemExit(f'{path}: bad IDX magic {magic:#x}, expected {expect_magic:#x}')
    ndim = magic & 0xFF
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], 'big') for i in range(ndim)]
    off = 4 + 4 * ndim
    n = int(np.prod(dims))
    if len(raw) - off != n:
        raise SystemExit(f'{path}: expected {n} data bytes, found {len(raw) - off}')
    return np.frombuffer(raw, dtype=np.uint8, offset=off).reshape(dims)


def lt_counts():
    # floor keeps n_0 = 6000 and n_9 = 60 exactly (6000 * 0.01 = 60)
    return np.array([int(np.floor(N_MAX * (1.0 / RHO) ** (c / (K - 1)) + 1e-9))
                     for c in range(K)], dtype=np.int32)


class SmallCNN(nn.Module):
    """conv3x3(16)-pool-conv3x3(32)-pool-fc(64)-fc(10): ~60k parameters."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 16, 3, padding=1)
        self.c2 = nn.Conv2d(16, 32, 3, padding=1)
        self.f1 = nn.Linear(32 * 7 * 7, 64)
        self.f2 = nn.Linear(64, K)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.max_pool2d(F.relu(self.c2(x)), 2)
        x = F.relu(self.f1(x.flatten(1)))
        return self.f2(x)


def accs(logits, labels):
    pred = logits.argmax(1)
    top1 = float((pred == labels).mean())
    rec = np.array([(pred[labels == c] == c).mean() for c in range(K)])
    return top1, float(rec.mean()), rec


def sha256(path):
    with open(path, 'rb') as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', default='data/fmnist-lt', help='output directory')
    ap.add_argument('--src', default=SRC_DIR, help='directory of the Fashion-MNIST IDX files')
    args = ap.parse_args()

    torch.set_num_threads(2)
    torch.manual_seed(SEED_TORCH)
    torch.use_deterministic_algorithms(True)

    xtr = read_idx(os.path.join(args.src, 'train-images-idx3-ubyte.gz'), 0x803)
    ytr = read_idx(os.path.join(args.src, 'train-labels-idx1-ubyte.gz'), 0x801)
    xte = read_idx(os.path.join(args.src, 't10k-images-idx3-ubyte.gz'), 0x803)
    yte = read_idx(os.path.join(args.src, 't10k-labels-idx1-ubyte.gz'), 0x801)

    counts = lt_counts()
    rng = np.random.default_rng(SEED_SUBSAMPLE)
    idx = np.concatenate([rng.choice(np.flatnonzero(ytr == c), size=int(counts[c]), replace=False)
                          for c in range(K)])
    x = torch.from_numpy(xtr[idx].astype(np.float32) / 255.0).unsqueeze(1)
    y = torch.from_numpy(ytr[idx].astype(np.int64))
    # Normalise with the LT training set's own statistics.
    mean, std = float(x.mean()), float(x.std())
    x = (x - mean) / std

    model = SmallCNN()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    g = torch.Generator().manual_seed(SEED_TORCH)
    t0 = time.time()
    for ep in range(EPOCHS):
        model.train()
        perm = torch.randperm(len(y), generator=g)
        tot = 0.0
        for s in range(0, len(y), BATCH):
            b = perm[s:s + BATCH]
            loss = F.cross_entropy(model(x[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += float(loss) * len(b)
        print(f'epoch {ep + 1}/{EPOCHS}: train CE {tot / len(y):.4f} ({time.time() - t0:.0f}s)', flush=True)
    train_s = time.time() - t0

    # Stratified half split of the balanced test split.
    rs = np.random.default_rng(SEED_SPLIT)
    val_idx, test_idx = [], []
    for c in range(K):
        ic = rs.permutation(np.flatnonzero(yte == c))
        h = len(ic) // 2
        val_idx.append(ic[:h])
        test_idx.append(ic[h:])
    val_idx = np.sort(np.concatenate(val_idx))
    test_idx = np.sort(np.concatenate(test_idx))

    model.eval()
    xt = (torch.from_numpy(xte.astype(np.float32) / 255.0).unsqueeze(1) - mean) / std
    with torch.no_grad():
        logits = torch.cat([model(xt[s:s + 1000]) for s in range(0, len(xt), 1000)]).numpy().astype(np.float32)

    out = args.out
    os.makedirs(out, exist_ok=True)
    files = {
        'val_logits.npy': np.ascontiguousarray(logits[val_idx], dtype='<f4'),
        'val_labels.npy': yte[val_idx].astype('<i4'),
        'test_logits.npy': np.ascontiguousarray(logits[test_idx], dtype='<f4'),
        'test_labels.npy': yte[test_idx].astype('<i4'),
        'train_counts.npy': counts.astype('<i4'),
    }
    for name, arr in files.items():
        np.save(os.path.join(out, name), arr)

    log_prior = np.log(counts / counts.sum())
    rows = []
    for split in ('val', 'test'):
        lg, lb = files[f'{split}_logits.npy'], files[f'{split}_labels.npy']
        p1, pb, prec = accs(lg, lb)
        a1, ab, arec = accs(lg - log_prior, lb)
        rows.append((split, p1, pb, prec, a1, ab, arec))
        print(f'{split}: plain top-1 {p1:.4f} balanced {pb:.4f} | LA top-1 {a1:.4f} balanced {ab:.4f}')

    cmd = 'cd <repo> && /usr/bin/python3 scripts/make-fmnist-lt.py' + ('' if out == 'data/fmnist-lt' else f' --out {out}')
    pkg_ver = subprocess.run(['dpkg-query', '-W', '-f=${Version}', 'dataset-fashion-mnist'],
                             capture_output=True, text=True).stdout.strip() or 'unknown'
    L = []
    L.append('# Long-tailed Fashion-MNIST logits (demo data)\n')
    L.append('Generated by `scripts/make-fmnist-lt.py`; do not edit by hand. Rerun to regenerate.\n')
    L.append('## Source\n')
    L.append(f'- Debian package `dataset-fashion-mnist` version `{pkg_ver}` ({args.src}), '
             'Fashion-MNIST by Zalando Research (MIT licence).')
    L.append('- Training images: the 60,000-image training split, subsampled (below). '
             'Validation and test: the balanced 10,000-image `t10k` split, halved.\n')
    L.append('## Command\n')
    L.append(f'```\n{cmd}\n```\n')
    L.append(f'Python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}, '
             f'torch.set_num_threads(2), torch.use_deterministic_algorithms(True). '
             f'Training took {train_s:.0f} s on the build machine (CPU).\n')
    L.append('Trained with PyTorch (Debian `python3-torch`), not tfjs. Rerunning on the same machine reproduces '
             'the .npy files bit for bit (deterministic algorithms, fixed seeds); another CPU or torch build may '
             'differ in the last bits of the logits.\n')
    L.append('## Intended use\n')
    L.append('`val_*`: unlabeled-style validation logits to fit OTLM / estimate a prior (labels for evaluation only); '
             '`test_*`: held-out logits for reporting. Both are balanced (500 per class), so the target prior is uniform.\n')
    L.append('## Long-tailed profile\n')
    L.append(f'n_c = floor(n_max * (1/rho)^(c/(K-1))), n_max = {N_MAX}, rho = {RHO}, K = {K}; '
             'classes in the natural Fashion-MNIST order (class 0 = head, class 9 = tail). '
             f'Images per class drawn without replacement with numpy `default_rng({SEED_SUBSAMPLE})`. '
             f'Total {int(counts.sum())} training images.\n')
    L.append('| class | name | train count |\n|---:|---|---:|')
    for c in range(K):
        L.append(f'| {c} | {CLASS_NAMES[c]} | {counts[c]} |')
    L.append('')
    L.append('## Classifier\n')
    L.append('Small CNN: conv3x3(1->16, pad 1)-ReLU-maxpool2 / conv3x3(16->32, pad 1)-ReLU-maxpool2 / '
             f'fc(1568->64)-ReLU / fc(64->10). Plain cross-entropy, Adam lr {LR}, batch {BATCH}, '
             f'{EPOCHS} epochs, no augmentation, no re-weighting; inputs scaled to [0,1] and standardised '
             f'with the LT training set mean {mean:.4f} / std {std:.4f}. torch seed {SEED_TORCH} '
             '(init and shuffling).\n')
    L.append('## Splits\n')
    L.append(f'The t10k split (1000 per class) is split per class into 500 validation + 500 test images with '
             f'numpy `default_rng({SEED_SPLIT})` permutations; each half keeps t10k order.\n')
    L.append('## Files\n')
    L.append('| file | dtype | shape | sha256 |\n|---|---|---|---|')
    for name, arr in files.items():
        L.append(f'| {name} | {arr.dtype.str} | {"x".join(map(str, arr.shape))} | `{sha256(os.path.join(out, name))}` |')
    L.append('')
    L.append('Logits are raw (pre-softmax) float32, row-major (C order), one row per image; labels int32 in 0..9.\n')
    L.append('## Accuracy (computed by the script with numpy)\n')
    L.append('Plain = argmax of the logits. LA = Logit Adjustment, argmax of (logits - log pi), '
             'pi = train_counts / sum (tau = 1), as a quick sanity check of the correction.\n')
    L.append('| split | plain top-1 | plain balanced | LA top-1 | LA balanced |\n|---|---:|---:|---:|---:|')
    for split, p1, pb, _, a1, ab, _ in rows:
        L.append(f'| {split} | {p1:.4f} | {pb:.4f} | {a1:.4f} | {ab:.4f} |')
    L.append('')
    L.append('Per-class recall (test split) -- the plain classifier is head-biased:\n')
    L.append('| class | train count | plain recall | LA recall |\n|---:|---:|---:|---:|')
    _, _, _, prec, _, _, arec = rows[1]
    for c in range(K):
        L.append(f'| {c} | {counts[c]} | {prec[c]:.3f} | {arec[c]:.3f} |')
    L.append('')
    with open(os.path.join(out, 'PROVENANCE.md'), 'w') as fh:
        fh.write('\n'.join(L))
    print('wrote', out)


if __name__ == '__main__':
    sys.exit(main())
