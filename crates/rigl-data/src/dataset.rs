//! [`ImageSet`]: images and labels in memory, and batches of Burn tensors.

use burn::tensor::{Device, Int, Tensor, TensorData};
use rigl_kernels::Philox;

/// Images (unsigned bytes, `[n, channels, height, width]` row-major) and their labels.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageSet {
    /// Pixel data, `n * channels * height * width` bytes.
    pub pixels: Vec<u8>,
    /// One label per image.
    pub labels: Vec<u32>,
    /// Channels per image.
    pub channels: usize,
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
    /// Number of classes.
    pub classes: usize,
    /// Per-channel mean and standard deviation (of values in `[0, 1]`) used to normalise.
    pub normalization: Vec<(f32, f32)>,
}

/// Random crop with padding and horizontal flips (CIFAR-style augmentation).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Augmentation {
    /// Reflect-padding on each side before the random crop back to the original size.
    pub pad: usize,
    /// Flip horizontally with probability 1/2.
    pub flip: bool,
}

impl ImageSet {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Bytes per image.
    pub fn image_size(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Images per class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.classes];
        for &l in &self.labels {
            if (l as usize) < c.len() {
                c[l as usize] += 1;
            }
        }
        c
    }

    /// The first `n` images (or all of them).
    pub fn take(mut self, n: usize) -> Self {
        let n = n.min(self.len());
        self.pixels.truncate(n * self.image_size());
        self.labels.truncate(n);
        self
    }

    /// The order in which epoch `epoch` visits the images: a permutation drawn from the
    /// counter-based generator keyed by `(seed, epoch)`, so a resumed run sees the same order.
    pub fn epoch_order(&self, seed: u64, epoch: u32) -> Vec<usize> {
        let g = Philox::new(seed);
        let mut keyed: Vec<(u32, usize)> = (0..self.len())
            .map(|i| (g.u32(0x5348_5546, epoch, i as u64), i))
            .collect();
        keyed.sort_unstable();
        keyed.into_iter().map(|(_, i)| i).collect()
    }

    /// A normalised batch `[b, c, h, w]` of the images at `indices`, with labels, augmented
    /// deterministically by `(seed, epoch, image index)` when `augment` is given.
    pub fn batch(
        &self,
        indices: &[usize],
        augment: Option<(Augmentation, u64, u32)>,
        device: &Device,
    ) -> (Tensor<4>, Tensor<1, Int>) {
        let (c, h, w) = (self.channels, self.height, self.width);
        let size = self.image_size();
        let mut x = Vec::with_capacity(indices.len() * size);
        for &i in indices {
            let img = &self.pixels[i * size..(i + 1) * size];
            let (dy, dx, flip) = match augment {
                Some((a, seed, epoch)) => {
                    let g = Philox::new(seed);
                    let r = |k: u64| g.u32(0x4155_4731, epoch, (i as u64) * 4 + k);
                    let span = 2 * a.pad as u32 + 1;
                    (
                        (r(0) % span) as isize - a.pad as isize,
                        (r(1) % span) as isize - a.pad as isize,
                        a.flip && r(2) & 1 == 1,
                    )
                }
                None => (0, 0, false),
            };
            for ch in 0..c {
                let (mean, std) = self.normalization.get(ch).copied().unwrap_or((0.0, 1.0));
                for yy in 0..h {
                    for xx in 0..w {
                        let sx = if flip { w - 1 - xx } else { xx };
                        let sy = reflect(yy as isize + dy, h);
                        let sx = reflect(sx as isize + dx, w);
                        let v = img[ch * h * w + sy * w + sx] as f32 / 255.0;
                        x.push((v - mean) / std);
                    }
                }
            }
        }
        let y: Vec<i64> = indices.iter().map(|&i| self.labels[i] as i64).collect();
        let b = indices.len();
        (
            Tensor::from_data(TensorData::new(x, [b, c, h, w]), device),
            Tensor::from_data(TensorData::new(y, [b]), device),
        )
    }
}

/// Reflect an out-of-range coordinate back into `0..n` (no edge repeat, like `np.pad(mode='reflect')`).
fn reflect(i: isize, n: usize) -> usize {
    let n = n as isize;
    if n == 1 {
        return 0;
    }
    let period = 2 * (n - 1);
    let mut i = i.rem_euclid(period);
    if i >= n {
        i = period - i;
    }
    i as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> ImageSet {
        ImageSet {
            pixels: (0..2 * 3 * 3).map(|v| v as u8 * 10).collect(),
            labels: vec![1, 0],
            channels: 1,
            height: 3,
            width: 3,
            classes: 2,
            normalization: vec![(0.0, 1.0)],
        }
    }

    #[test]
    fn reflect_pads_without_repeating_edges() {
        let got: Vec<usize> = (-3..6).map(|i| reflect(i, 3)).collect();
        assert_eq!(got, [1, 2, 1, 0, 1, 2, 1, 0, 1]);
    }

    #[test]
    fn batches_are_normalised_and_labelled() {
        let device = Device::default();
        let (x, y) = set().batch(&[1, 0], None, &device);
        assert_eq!(x.dims(), [2, 1, 3, 3]);
        let xs: Vec<f32> = x.into_data().convert::<f32>().try_into_vec().unwrap();
        assert!((xs[0] - 90.0 / 255.0).abs() < 1e-6);
        let ys: Vec<i64> = y.into_data().convert::<i64>().try_into_vec().unwrap();
        assert_eq!(ys, [0, 1]);
    }

    #[test]
    fn augmentation_is_deterministic_and_keeps_pixels() {
        let device = Device::default();
        let aug = Some((Augmentation { pad: 1, flip: true }, 5, 2));
        let a = set().batch(&[0, 1], aug, &device).0.into_data();
        let b = set().batch(&[0, 1], aug, &device).0.into_data();
        assert_eq!(a, b);
        // Every augmented pixel is one of the image's own pixels.
        let px: Vec<f32> = a.convert::<f32>().try_into_vec().unwrap();
        for v in &px[..9] {
            let raw = (v * 255.0).round() as u8;
            assert!(set().pixels[..9].contains(&raw));
        }
    }

    #[test]
    fn epoch_orders_are_permutations_that_change_per_epoch() {
        let mut s = set();
        s.labels = vec![0; 50];
        s.pixels = vec![0; 50 * 9];
        let a = s.epoch_order(1, 0);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_ne!(a, s.epoch_order(1, 1));
        assert_eq!(a, s.epoch_order(1, 0));
    }
}
