"""Builds the multi-mode task of issue #14 from seglearn 1.2.5's watch_dataset.npy, the way
host-tools/bench/generalization/make_watch_tasks.py builds its tasks (same source, same CSV
layout, test subjects unseen):

  normal    = three exercises: pendulum (PEN), upright row (ROW), shoulder abduction (ABD)
  anomalous = the four others: flexion (FEL), internal rotation (IR), external rotation (ER),
              trapezius extension (TRAP)

train.csv: the three normal exercises of subjects 1-7, recordings interleaved subject by
subject (s1 R: PEN ROW ABD, s1 L: PEN ROW ABD, s2 R, ...), so the validation tail (the last
20 % of the stream, what `tinyvae train` holds out) holds every normal exercise.
test.csv: subjects 8-10, per (subject, side) slot its three normal recordings and two anomalous
ones (the four anomalous exercises in turn), alternating N A N A N; column `label`.
test_activity.csv / train_activity.csv: the exercise name of every row (for the gate-agreement
diagnostic only; never used for training or choosing).

Usage: python make_multimode_task.py path/to/watch_dataset.npy OUTDIR
Needs numpy. Not committed data."""
import sys, os
import numpy as np

EX = ['PEN', 'ABD', 'FEL', 'IR', 'ER', 'TRAP', 'ROW']
NORMAL = [0, 6, 1]          # PEN, ROW, ABD
ANOM = [2, 3, 4, 5]         # FEL, IR, ER, TRAP


def rec(d, ex, subj, side):
    idx = [i for i in range(len(d['X']))
           if d['y'][i] == ex and d['subject'][i] == subj and d['side'][i] == side]
    assert len(idx) == 1, (ex, subj, side, idx)
    return np.asarray(d['X'][idx[0]], dtype=np.float64)


def write(path, x, labels=None):
    with open(path, 'w') as f:
        f.write('ax,ay,az,wx,wy,wz' + (',label' if labels is not None else '') + '\n')
        for i, row in enumerate(x):
            f.write(','.join('%.6f' % v for v in row)
                    + (',%d' % labels[i] if labels is not None else '') + '\n')


def main():
    d = np.load(sys.argv[1], allow_pickle=True).item()
    assert list(d['y_labels']) == EX and list(d['X_labels']) == ['ax', 'ay', 'az', 'wx', 'wy', 'wz']
    out = os.path.join(sys.argv[2], 'watch_multimode')
    os.makedirs(out, exist_ok=True)
    train, tr_act = [], []
    for s in range(1, 8):
        for side in (1, 0):
            for ex in NORMAL:
                x = rec(d, ex, s, side)
                train.append(x)
                tr_act += [EX[ex]] * len(x)
    test, labels, te_act, desc, k = [], [], [], [], 0
    for s in range(8, 11):
        for side in (1, 0):
            order = [('N', NORMAL[0]), ('A', None), ('N', NORMAL[1]), ('A', None), ('N', NORMAL[2])]
            for kind, ex in order:
                if kind == 'A':
                    ex = ANOM[k % len(ANOM)]
                    k += 1
                x = rec(d, ex, s, side)
                test.append(x)
                labels.append(np.full(len(x), int(kind == 'A')))
                te_act += [EX[ex]] * len(x)
                desc.append(f"{EX[ex]} s{s}{'R' if side else 'L'}")
    tr, te, lab = np.concatenate(train), np.concatenate(test), np.concatenate(labels)
    write(os.path.join(out, 'train.csv'), tr)
    write(os.path.join(out, 'test.csv'), te, lab)
    for name, act in (('train_activity.csv', tr_act), ('test_activity.csv', te_act)):
        with open(os.path.join(out, name), 'w') as f:
            f.write('activity\n' + '\n'.join(act) + '\n')
    with open(os.path.join(out, 'README.md'), 'w') as f:
        f.write("# watch_multimode (generated, not committed)\n"
                "Normal = PEN, ROW, ABD; anomaly = FEL, IR, ER, TRAP.\n"
                f"train.csv: subjects 1-7, R then L, PEN ROW ABD interleaved ({len(tr)} rows).\n"
                f"test.csv ({len(te)} rows, {int(lab.sum())} anomalous): {', '.join(desc)}.\n"
                "Source: seglearn-1.2.5 wheel, seglearn/data/watch_dataset.npy (BSD-3, Burns et al. 2018).\n")
    print('watch_multimode', tr.shape, te.shape, int(lab.sum()), desc)


main()
