//! The original project's CPU-bound task, bit-exact with its Python.

/// Modulus of the Fibonacci pair.
pub const FIB_MOD: u64 = 10_000_019;
/// Modulus of the accumulator.
pub const ACC_MOD: u64 = 1_000_000_007;

/// Measured 1.31 ns per step (release, one core of the 2-core development VM): 5·10⁹ steps
/// ≈ 6.6 s, leaving room for slower cores and for `gil`'s clock reads, which share the cap.
pub const MAX_N: u64 = 5_000_000_000;

/// The pair and accumulator part-way through [`fib`], so [`crate::kernel::gil`] can compute in
/// slices between lock hand-offs and still return the identical value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FibState {
    a: u64,
    b: u64,
    acc: u64,
}

impl FibState {
    pub(crate) const fn new() -> Self {
        FibState { a: 0, b: 1, acc: 0 }
    }

    /// Run `steps` iterations.
    ///
    /// Both reductions replace `%` by one conditional subtraction, which is exact here: `a, b <
    /// FIB_MOD` so `a + b < 2·FIB_MOD`, and `31a + 17b < 48·FIB_MOD < ACC_MOD` so
    /// `acc + 31a + 17b < 2·ACC_MOD`. That removes two divisions from the dependency chain.
    #[inline]
    pub(crate) fn advance(&mut self, steps: u64) {
        let FibState {
            mut a,
            mut b,
            mut acc,
        } = *self;
        for _ in 0..steps {
            let mut t = a + b;
            if t >= FIB_MOD {
                t -= FIB_MOD;
            }
            a = b;
            b = t;
            acc += 31 * a + 17 * b;
            if acc >= ACC_MOD {
                acc -= ACC_MOD;
            }
        }
        *self = FibState { a, b, acc };
    }

    pub(crate) const fn result(&self) -> u64 {
        self.acc
    }
}

/// The `fib` kernel, bit-exact with the original Python:
///
/// ```text
/// acc = 0; a, b = 0, 1
/// repeat max(1, n) times:
///     a, b = b, (a + b) mod 10000019
///     acc = (acc + 31a + 17b) mod 1000000007
/// result = acc
/// ```
///
/// Pure ALU on three registers: no memory traffic, no sharing, no allocation.
pub fn fib(n: u64) -> u64 {
    let mut state = FibState::new();
    state.advance(n.max(1));
    state.result()
}
