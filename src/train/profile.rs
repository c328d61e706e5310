//! Where a training run's wall time goes: seconds per phase of the epoch loop, summed over
//! the epochs, so that per-epoch costs (pipeline fill, monitor, checkpoints) can be told
//! apart from the training steps. The trainer logs each epoch's at debug level and returns
//! the run's total; `sslmem-train bench-epoch` prints it.

use std::fmt;
use std::time::Instant;

use serde::Serialize;

/// Seconds spent in each phase. The main thread's phases add up to `wall`; `augment` and
/// `producer_blocked` are the producer thread's, which run at the same time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Profile {
    /// Epochs and images trained.
    pub epochs: usize,
    pub images: usize,
    /// Wall time of the epoch loop (model set-up before it not included).
    pub wall: f64,
    /// Epoch start to its first batch: shuffle, producer start and any augmentation that
    /// the previous epoch did not already do (the pipeline fill).
    pub first_batch: f64,
    /// Waiting on the producer for the epoch's later batches.
    pub waiting: f64,
    /// Tensor copy, forward, backward, optimiser step and reading the loss back.
    pub step: f64,
    /// Progress bar and the end of the epoch's producer.
    pub bookkeeping: f64,
    /// The memorization monitor.
    pub monitor: f64,
    /// Log lines and checkpoints.
    pub save: f64,
    /// Producer: making views (on the rayon pool).
    pub augment: f64,
    /// Producer: waiting for room in the queue (it is ahead of training).
    pub producer_blocked: f64,
}

impl Profile {
    pub fn add(&mut self, o: &Profile) {
        self.epochs += o.epochs;
        self.images += o.images;
        self.wall += o.wall;
        self.first_batch += o.first_batch;
        self.waiting += o.waiting;
        self.step += o.step;
        self.bookkeeping += o.bookkeeping;
        self.monitor += o.monitor;
        self.save += o.save;
        self.augment += o.augment;
        self.producer_blocked += o.producer_blocked;
    }

    pub fn images_per_second(&self) -> f64 {
        self.images as f64 / self.wall
    }
}

impl fmt::Display for Profile {
    /// Seconds per epoch of each phase.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.epochs.max(1) as f64;
        write!(
            f,
            "{} epochs, {} images in {:.2} s ({:.1} images/s); per epoch: {:.3} s = first batch {:.3} + waiting {:.3} + steps {:.3} + bookkeeping {:.3} + monitor {:.3} + log/checkpoint {:.3}; producer: augment {:.3}, blocked {:.3}",
            self.epochs,
            self.images,
            self.wall,
            self.images_per_second(),
            self.wall / e,
            self.first_batch / e,
            self.waiting / e,
            self.step / e,
            self.bookkeeping / e,
            self.monitor / e,
            self.save / e,
            self.augment / e,
            self.producer_blocked / e,
        )
    }
}

/// Adds the seconds since the last call to one phase.
pub(crate) struct Lap(Instant);

impl Lap {
    pub(crate) fn start() -> Self {
        Self(Instant::now())
    }

    /// Seconds since the last lap (or the start), and starts the next.
    pub(crate) fn lap(&mut self) -> f64 {
        let now = Instant::now();
        let s = now.duration_since(self.0).as_secs_f64();
        self.0 = now;
        s
    }
}
