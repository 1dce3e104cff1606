"""Builds other novel-movement tasks from seglearn 1.2.5's watch_dataset.npy, in the CSV layout
of data/watch_shoulder_pen (train.csv: normal recordings of subjects 1-7, right then left arm;
test.csv: 12 recordings of subjects 8-10, alternating normal/anomalous, with the same subject/side
slots as the bundled set, the 6 anomalous slots taking the 6 other exercises in their order).
Usage: python make_watch_tasks.py path/to/watch_dataset.npy OUTDIR [--check-bundled BUNDLED_DIR]
Needs numpy. Not committed data: for checking generalization only."""
import sys, os
import numpy as np

EX = ['PEN', 'ABD', 'FEL', 'IR', 'ER', 'TRAP', 'ROW']
# (kind, subject, side) of the bundled test set: N = normal slot, A = anomalous slot.
SLOTS = [('N', 8, 1), ('A', 8, 1), ('N', 8, 0), ('A', 9, 1), ('N', 9, 1), ('A', 10, 1),
         ('N', 9, 0), ('A', 8, 0), ('N', 10, 1), ('A', 9, 0), ('N', 10, 0), ('A', 10, 0)]


def rec(d, ex, subj, side):
    idx = [i for i in range(len(d['X']))
           if d['y'][i] == ex and d['subject'][i] == subj and d['side'][i] == side]
    assert len(idx) == 1, (ex, subj, side, idx)
    return np.asarray(d['X'][idx[0]], dtype=np.float64)


def build(d, normal):
    train = [rec(d, normal, s, side) for s in range(1, 8) for side in (1, 0)]
    others = [e for e in range(7) if e != normal]
    test, labels, desc, k = [], [], [], 0
    for kind, s, side in SLOTS:
        ex = normal if kind == 'N' else others[k]
        k += kind == 'A'
        x = rec(d, ex, s, side)
        test.append(x)
        labels.append(np.full(len(x), int(kind == 'A')))
        desc.append(f"{EX[ex]} s{s}{'R' if side else 'L'}")
    return np.concatenate(train), np.concatenate(test), np.concatenate(labels), desc


def write(path, x, labels=None):
    with open(path, 'w') as f:
        f.write('ax,ay,az,wx,wy,wz' + (',label' if labels is not None else '') + '\n')
        for i, row in enumerate(x):
            f.write(','.join('%.6f' % v for v in row)
                    + (',%d' % labels[i] if labels is not None else '') + '\n')


def main():
    d = np.load(sys.argv[1], allow_pickle=True).item()
    assert list(d['y_labels']) == EX and list(d['X_labels']) == ['ax', 'ay', 'az', 'wx', 'wy', 'wz']
    out = sys.argv[2]
    if '--check-bundled' in sys.argv:
        bdir = sys.argv[sys.argv.index('--check-bundled') + 1]
        tr, te, lab, desc = build(d, 0)
        ref_tr = np.loadtxt(os.path.join(bdir, 'train.csv'), delimiter=',', skiprows=1)
        ref_te = np.loadtxt(os.path.join(bdir, 'test.csv'), delimiter=',', skiprows=1)
        ok = (ref_tr.shape == tr.shape and np.abs(ref_tr - tr).max() < 1e-6 and ref_te.shape[0] == te.shape[0]
              and np.abs(ref_te[:, :6] - te).max() < 1e-6 and (ref_te[:, 6] == lab).all())
        print('bundled set reproduced:', ok, desc)
    for normal in (1, 6):
        name = f"watch_{EX[normal].lower()}"
        tr, te, lab, desc = build(d, normal)
        os.makedirs(os.path.join(out, name), exist_ok=True)
        write(os.path.join(out, name, 'train.csv'), tr)
        write(os.path.join(out, name, 'test.csv'), te, lab)
        with open(os.path.join(out, name, 'README.md'), 'w') as f:
            f.write(f"# {name} (generated, not committed)\nNormal = {EX[normal]}; anomaly = any other exercise.\n"
                    f"train.csv: {EX[normal]} subjects 1-7, R then L ({len(tr)} rows).\n"
                    f"test.csv ({len(te)} rows, {int(lab.sum())} anomalous): {', '.join(desc)}.\n"
                    "Source: seglearn-1.2.5 wheel, seglearn/data/watch_dataset.npy (BSD-3, Burns et al. 2018).\n")
        print(name, tr.shape, te.shape, int(lab.sum()), desc)


main()
