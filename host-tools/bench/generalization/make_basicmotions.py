"""BasicMotions (sktime 1.2.0 wheel, sktime/datasets/data/BasicMotions/*.ts; UEA archive; 4 students,
smartwatch accel+gyro, 10 Hz, 100 samples per case) as a novel-activity task in the
watch_shoulder_pen CSV layout. Normal = Walking. train.csv: the 10 Walking cases of _TRAIN
concatenated. test.csv: the 40 cases of _TEST concatenated as Walking_i, Standing_i, Running_i,
Badminton_i for i = 0..9, label 1 on non-Walking rows. Not committed data; generalization check only.
Usage: python make_basicmotions.py BasicMotions_DIR OUTDIR"""
import os, sys


def read_ts(path):
    cases = []
    for line in open(path):
        line = line.strip()
        if not line or line[0] in '#@':
            continue
        parts = line.split(':')
        dims = [[float(v) for v in p.split(',')] for p in parts[:-1]]
        cases.append((parts[-1], list(zip(*dims))))
    return cases


src, out = sys.argv[1], os.path.join(sys.argv[2], 'basicmotions_walking')
os.makedirs(out, exist_ok=True)
tr = read_ts(os.path.join(src, 'BasicMotions_TRAIN.ts'))
te = read_ts(os.path.join(src, 'BasicMotions_TEST.ts'))
hdr = 'ax,ay,az,wx,wy,wz'
with open(os.path.join(out, 'train.csv'), 'w') as f:
    f.write(hdr + '\n')
    for c, rows in tr:
        if c == 'Walking':
            for r in rows:
                f.write(','.join('%.6f' % v for v in r) + '\n')
by = {k: [rows for c, rows in te if c == k] for k in ('Walking', 'Standing', 'Running', 'Badminton')}
with open(os.path.join(out, 'test.csv'), 'w') as f:
    f.write(hdr + ',label\n')
    for i in range(10):
        for k in ('Walking', 'Standing', 'Running', 'Badminton'):
            for r in by[k][i]:
                f.write(','.join('%.6f' % v for v in r) + ',%d\n' % (k != 'Walking'))
print({k: len(v) for k, v in by.items()})
