//! Capped exponential backoff, sans-IO: the caller sleeps (and watches its abort token).

use std::time::Duration;

/// Delays that double from `initial` up to `max`; [`Backoff::reset`] after a success.
#[derive(Clone, Debug)]
pub struct Backoff {
    initial: Duration,
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        let initial = initial.min(max);
        Self {
            initial,
            next: initial,
            max,
        }
    }

    /// The delay to wait now; the one after it is twice as long (at most `max`).
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    /// The delay [`Self::next_delay`] would return, without advancing.
    pub fn peek(&self) -> Duration {
        self.next
    }

    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(50), ms(300));
        let got: Vec<_> = (0..5).map(|_| b.next_delay()).collect();
        assert_eq!(got, [ms(50), ms(100), ms(200), ms(300), ms(300)]);
        b.reset();
        assert_eq!(b.peek(), ms(50));
        assert_eq!(Backoff::new(ms(10), ms(5)).next_delay(), ms(5));
    }
}
