//! The batches of a batch-wise step still to do: from its checkpoint on, skipping the ranges
//! done beyond it, cut at the plan's batch size.

/// Where the step starts: its checkpoint, the rows it touched so far, and the batches done
/// beyond the checkpoint (by batches that committed side by side).
#[derive(Debug, Clone, Copy)]
pub struct Start<'p> {
    pub checkpoint: i64,
    pub touched: i64,
    pub ahead: &'p [(i64, i64)],
}

/// The batches still to do, in order, and what is done so far.
#[derive(Debug, Clone, Copy)]
pub struct Todo<'p> {
    pub next: i64,
    batch: i64,
    pub total: i64,
    ahead: &'p [(i64, i64)],
    /// Events of the selection whose batch is done.
    pub events_done: i64,
    pub touched: i64,
}

impl<'p> Todo<'p> {
    pub fn new(start: Start<'p>, batch: i64, total: i64) -> Todo<'p> {
        Todo {
            next: start.checkpoint,
            batch: batch.max(1),
            total,
            ahead: start.ahead,
            events_done: start.checkpoint + crate::engine::state::events_in(start.ahead),
            touched: start.touched,
        }
    }

    /// The next batch not done yet: from the checkpoint on, skipping those done beyond it.
    pub fn pop(&mut self) -> Option<(i64, i64)> {
        while let Some(&(_, upto)) = self.ahead.iter().find(|&&(f, _)| f == self.next) {
            self.next = upto;
        }
        if self.next >= self.total {
            return None;
        }
        let from = self.next;
        let upto = (from + self.batch).min(self.total);
        // A batch done beyond the checkpoint by an earlier attempt ends this one where it starts.
        let upto = self
            .ahead
            .iter()
            .map(|&(f, _)| f)
            .filter(|&f| f > from && f < upto)
            .min()
            .unwrap_or(upto);
        self.next = upto;
        Some((from, upto))
    }

    pub fn finished(&self) -> bool {
        let mut peek = *self;
        peek.pop().is_none()
    }
}

/// Every batch still to do, in order.
pub fn ranges_to_do(
    checkpoint: i64,
    ahead: &[(i64, i64)],
    batch: i64,
    total: i64,
) -> Vec<(i64, i64)> {
    let start = Start {
        checkpoint,
        touched: 0,
        ahead,
    };
    let mut todo = Todo::new(start, batch, total);
    std::iter::from_fn(|| todo.pop()).collect()
}

#[cfg(test)]
mod tests {
    use super::{Start, Todo};

    fn all(mut todo: Todo<'_>) -> Vec<(i64, i64)> {
        std::iter::from_fn(|| todo.pop()).collect()
    }

    #[test]
    fn batches_run_from_the_checkpoint_and_skip_those_done_beyond_it() {
        let from = |checkpoint, ahead| Start {
            checkpoint,
            touched: 0,
            ahead,
        };
        assert_eq!(
            all(Todo::new(from(0, &[]), 100, 250)),
            [(0, 100), (100, 200), (200, 250)]
        );
        assert_eq!(
            all(Todo::new(from(100, &[(200, 300), (400, 450)]), 100, 450)),
            [(100, 200), (300, 400)]
        );
        // Done beyond the checkpoint with another batch size: never overlapped.
        assert_eq!(
            all(Todo::new(from(0, &[(50, 150)]), 100, 300)),
            [(0, 50), (150, 250), (250, 300)]
        );
        let t = Todo::new(from(100, &[(200, 300)]), 100, 300);
        assert_eq!((t.events_done, t.next), (200, 100));
    }
}
