"""Regenerates the .npy fixtures of test/data.test.ts with NumPy (the independent reference).

Run from this directory: python3 make_fixtures.py   (written with numpy 2.4.6)
The .ts fixtures beside it are hand-written; each malformed one has its faulty line noted in
test/data.test.ts.
"""
import numpy as np

a = np.arange(12, dtype=np.float32).reshape(4, 3) * 0.5 - 1.25  # [T=4, C=3]
np.save("f4_T4_C3.npy", a)
b = np.arange(2 * 3 * 2, dtype=np.float64).reshape(2, 3, 2) / 7.0  # [B=2, T=3, C=2]
np.save("f8_B2_T3_C2.npy", b)
np.save("f4_fortran_T4_C3.npy", np.asfortranarray(a))
np.save("f8_bigendian_T4_C3.npy", a.astype(">f8"))
np.save("i4_T2_C2.npy", np.arange(4, dtype=np.int32).reshape(2, 2))
np.savetxt("f4_T4_C3.expected.csv", a, delimiter=",", fmt="%.9g")
np.savetxt("f8_B2_T3_C2.expected.csv", b.astype(np.float32).reshape(-1), delimiter=",", fmt="%.9g")
