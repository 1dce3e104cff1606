"""Prints the mixture-of-experts table from the runs of run_goals.sh (standard library only).

python3 table.py OUT TASK [--chosen-k]

Per model family (single VAE, top-1 MoE with K chosen per seed on validation, the widened
single VAE), 3 seeds, int8: ROC AUC of the default score through the streaming detector (what
the chip runs; `eval --json` roc_auc_int8), the dense mixture's AUC (roc_auc_int8_dense), MACs
per window (gate + one expert for the MoE) and parameter bytes; the paired bootstrap interval of
the AUC difference MoE - single (the same resampled test windows for both, 2000 resamples, the
difference of the 3-seed mean AUCs); and the gate's agreement with the true exercise on the
normal test windows (purity: each expert counted for its majority exercise; a diagnostic only).
"""
import json, os, random, sys


def auc(scores, labels):
    pairs = sorted(zip(scores, labels))
    n1 = sum(labels)
    n0 = len(labels) - n1
    rank_sum, i = 0.0, 0
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            j += 1
        r = (i + j + 1) / 2.0
        rank_sum += r * sum(1 for k in range(i, j) if pairs[k][1])
        i = j
    return (rank_sum - n1 * (n1 + 1) / 2.0) / (n0 * n1)


def read_scores(path):
    with open(path) as f:
        head = f.readline().strip().split(',')
        rows = [l.strip().split(',') for l in f if l.strip()]
    ix = {h: i for i, h in enumerate(head)}
    s = [float(r[ix['score']]) for r in rows]
    lab = [int(r[ix['label']]) for r in rows]
    start = [int(r[ix['start']]) for r in rows]
    end = [int(r[ix['end']]) for r in rows]
    exp = [r[ix['expert']] for r in rows] if 'expert' in ix else None
    return s, lab, start, end, exp


def load(out, name, seed):
    d = os.path.join(out, f"{name}_s{seed}")
    if not os.path.exists(d + '.scores.csv'):
        return None
    ev = json.load(open(d + '.eval.json'))
    cfg = json.load(open(os.path.join(d, 'config.json')))
    return {'eval': ev, 'cfg': cfg, 'scores': read_scores(d + '.scores.csv')}


def val_score(r):
    return r['cfg']['moe']['training']['val_score_top1_mean']


def chosen(out, seed):
    best = None
    for k in range(2, 9):
        r = load(out, f"moe{k}", seed)
        if r is not None and (best is None or val_score(r) < best[0]):
            best = (val_score(r), k, r)
    return best


def main():
    out, task = sys.argv[1], sys.argv[2]
    picks = {s: chosen(out, s) for s in (0, 1, 2)}
    if '--chosen-k' in sys.argv:
        ks = [p[1] for p in picks.values() if p]
        print(max(set(ks), key=ks.count))
        return
    kw = max(set(p[1] for p in picks.values()), key=[p[1] for p in picks.values()].count)
    fams = {'single': [load(out, 'single', s) for s in (0, 1, 2)],
            'moe': [picks[s][2] for s in (0, 1, 2)],
            f'wide{kw}': [load(out, f'wide{kw}', s) for s in (0, 1, 2)]}
    print(f"K chosen on validation per seed: {[picks[s][1] for s in (0, 1, 2)]} "
          f"(val mean top-1 score per K: " + '; '.join(
              f"s{s}: " + ', '.join(f"K={k} {val_score(load(out, f'moe{k}', s)):.1f}"
                                    for k in range(2, 9) if load(out, f'moe{k}', s))
              for s in (0, 1, 2)) + ")")
    print("| model | ROC AUC int8 (3 seeds) | mean | dense AUC | MACs/window | param bytes (int8) |")
    print("|---|---|---|---|---|---|")
    means = {}
    for name, rs in fams.items():
        if any(r is None for r in rs):
            print(f"| {name} | (missing runs) |")
            continue
        a = [r['eval']['roc_auc_int8'] for r in rs]
        means[name] = sum(a) / 3
        dense = [r['eval'].get('roc_auc_int8_dense') for r in rs]
        dtxt = ', '.join(f"{d:.4f}" for d in dense) if dense[0] is not None else '-'
        print(f"| {name} | {', '.join(f'{v:.4f}' for v in a)} | {means[name]:.4f} | {dtxt} | "
              f"{rs[0]['eval']['macs']} | {rs[0]['eval']['flash_bytes_int8']} |")
    # Paired bootstrap of the difference of 3-seed mean AUCs, MoE - single (and MoE - wide).
    rng = random.Random(0)
    lab = fams['single'][0]['scores'][1]
    n = len(lab)
    for other in ('single', f'wide{kw}'):
        if other not in means:
            continue
        diffs = []
        for _ in range(2000):
            idx = [rng.randrange(n) for _ in range(n)]
            l = [lab[i] for i in idx]
            if sum(l) in (0, n):
                continue
            m = sum(auc([r['scores'][0][i] for i in idx], l) for r in fams['moe']) / 3
            o = sum(auc([r['scores'][0][i] for i in idx], l) for r in fams[other]) / 3
            diffs.append(m - o)
        diffs.sort()
        lo, hi = diffs[int(0.025 * len(diffs))], diffs[int(0.975 * len(diffs)) - 1]
        print(f"MoE - {other}: {means['moe'] - means[other]:+.4f}, paired bootstrap 95 % interval "
              f"[{lo:+.4f}, {hi:+.4f}] ({len(diffs)} resamples)")
    tops = [r['eval']['roc_auc_int8'] for r in fams['moe']]
    dens = [r['eval']['roc_auc_int8_dense'] for r in fams['moe']]
    print("top-1 - dense AUC per seed: " + ', '.join(f"{t - d:+.4f}" for t, d in zip(tops, dens)))
    # Gate agreement with the true exercise on the normal test windows (purity).
    act = [l.strip() for l in open(os.path.join(task, 'test_activity.csv'))][1:]
    for s, r in zip((0, 1, 2), fams['moe']):
        sc, lb, st, en, ex = r['scores']
        counts = {}
        for a, b, l, e in zip(st, en, lb, ex):
            if l or not e:
                continue
            w = act[a:b]
            major = max(set(w), key=w.count)
            counts.setdefault(e, {}).setdefault(major, 0)
            counts[e][major] += 1
        tot = sum(sum(c.values()) for c in counts.values())
        pure = sum(max(c.values()) for c in counts.values())
        share = r['eval']['expert_share']
        desc = '; '.join(f"expert {e}: " + ', '.join(f"{k} {v}" for k, v in sorted(c.items()))
                         for e, c in sorted(counts.items()))
        print(f"seed {s} (K={picks[s][1]}): gate/exercise agreement {pure / tot:.3f} on {tot} normal "
              f"test windows ({desc}); expert_share {[round(x, 3) for x in share]}")


main()
