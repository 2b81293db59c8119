//! Anomalies are data: odd traffic or odd captures, counted under stable snake_case names with the
//! first few frames where each was seen (in the spirit of Zeek's "weirds"). They never stop the
//! analysis; the report shows them.

use crate::capture::FrameRef;

/// How many example frames an anomaly keeps.
pub const EXAMPLES: usize = 3;

/// One kind of anomaly: its name, how often, and the first frames where it was seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anomaly {
    pub name: &'static str,
    pub count: u64,
    pub frames: Vec<FrameRef>,
}

/// A small set of anomalies (a connection rarely has more than a few kinds).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Anomalies(Vec<Anomaly>);

impl Anomalies {
    /// Heap bytes held (the kinds and their example frames).
    pub fn heap_bytes(&self) -> usize {
        self.0.capacity() * std::mem::size_of::<Anomaly>()
            + self
                .0
                .iter()
                .map(|a| a.frames.capacity() * std::mem::size_of::<FrameRef>())
                .sum::<usize>()
    }

    pub fn note(&mut self, name: &'static str, frame: Option<FrameRef>) {
        let a = match self.0.iter_mut().find(|a| a.name == name) {
            Some(a) => a,
            None => {
                self.0.push(Anomaly {
                    name,
                    count: 0,
                    frames: Vec::new(),
                });
                self.0.last_mut().expect("just pushed")
            }
        };
        a.count += 1;
        if let Some(f) = frame {
            if a.frames.len() < EXAMPLES {
                a.frames.push(f);
            }
        }
    }

    pub fn count(&self, name: &str) -> u64 {
        self.0.iter().find(|a| a.name == name).map_or(0, |a| a.count)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Anomaly> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds another set's counts into this one (for per-capture totals).
    pub fn merge(&mut self, other: &Anomalies) {
        for a in &other.0 {
            match self.0.iter_mut().find(|b| b.name == a.name) {
                Some(b) => {
                    b.count += a.count;
                    for f in &a.frames {
                        if b.frames.len() < EXAMPLES {
                            b.frames.push(*f);
                        }
                    }
                }
                None => self.0.push(a.clone()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_keeps_the_first_examples() {
        let mut a = Anomalies::default();
        for i in 1..=5 {
            a.note("tcp_retransmission", Some(FrameRef { file: 0, frame: i }));
        }
        a.note("http_parse_error", None);
        assert_eq!(a.count("tcp_retransmission"), 5);
        assert_eq!(a.count("http_parse_error"), 1);
        assert_eq!(a.count("other"), 0);
        let first = a.iter().next().unwrap();
        assert_eq!(
            first.frames.iter().map(|f| f.frame).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
    }
}
