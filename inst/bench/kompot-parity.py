"""Compares the files written by kompot-parity.R with kompot 0.8.0 and Mellon 1.7.1."""
import sys
import numpy as np, pandas as pd
from kompot.differential import DifferentialExpression
import mellon
d = sys.argv[1] + "/"
emb = pd.read_csv(d + "emb.csv").values; y = pd.read_csv(d + "y.csv").values; u = pd.read_csv(d + "u.csv").values
obs = pd.read_csv(d + "obs.csv"); ours = pd.read_csv(d + "ours_de.csv"); ours_da = pd.read_csv(d + "ours_da.csv")
c1 = (obs.condition == "young").values; c2 = (obs.condition == "old").values
def run(sv):
    de = DifferentialExpression(n_landmarks=None)
    kw = {}
    if sv:
        kw = dict(condition1_sample_indices=obs["sample"].values[c1], condition2_sample_indices=obs["sample"].values[c2])
    de.fit(emb[c1], y[c1], emb[c2], y[c2], ls=1.3, landmarks=u, **kw)
    return de.predict(emb, compute_mahalanobis=True, progress=False)
def rel(a, b): return np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12))
r = run(False)
print("DE mean_lfc max rel diff", rel(ours.mean_lfc.values, r["mean_log_fold_change"]))
print("DE mahalanobis max rel diff", rel(ours.d.values, r["mahalanobis_distances"]))
r = run(True)
print("DE sample-variance mahalanobis max rel diff", rel(ours.d_sv.values, r["mahalanobis_distances"]))
# DA: Mellon density with the same landmarks, d, ls and exact nn distances.
from scipy.spatial import cKDTree
for k, mask in ((1, c1), (2, c2)):
    x = emb[mask]
    nn = cKDTree(x).query(x, 2)[0][:, 1]
    est = mellon.DensityEstimator(landmarks=u, d=2.5, ls=0.8, nn_distances=nn, gp_type="fixed", predictor_with_uncertainty=True)
    est.fit(x)
    ld = np.asarray(est.predict(emb, normalize=True)); var = np.asarray(est.predict.uncertainty(emb))
    print(f"DA condition {k}: log density max abs diff", np.max(np.abs(ld - ours_da[f"ld{k}"].values)))
    if k == 1: v = var
    else: v = v + var
print("DA variance max rel diff", rel(ours_da["var"].values, v))
