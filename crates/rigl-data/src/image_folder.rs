//! ImageNet-style image folders: `root/<class>/<image>.{png,jpg,jpeg}`, classes in sorted
//! order, each image resized (shorter side) and centre-cropped to a square.

use crate::dataset::ImageSet;
use crate::error::{DataError, Result, io};
use image::imageops::FilterType;
use std::path::{Path, PathBuf};

/// The ImageNet channel statistics, the usual choice for natural images.
pub const IMAGENET_NORMALIZATION: [(f32, f32); 3] =
    [(0.485, 0.229), (0.456, 0.224), (0.406, 0.225)];

/// The largest side length [`ImageFolder::load`] accepts.
pub const MAX_IMAGE_SIZE: usize = 4096;

/// An image-folder tree, listed but not decoded.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageFolder {
    /// Class names (sub-directory names), sorted.
    pub classes: Vec<String>,
    /// Every image with its class index, sorted by class then file name.
    pub items: Vec<(PathBuf, u32)>,
}

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
}

impl ImageFolder {
    /// List the tree under `root`.
    ///
    /// # Errors
    /// [`DataError::Missing`] when `root` has no class directory with an image.
    pub fn open(root: &Path) -> Result<Self> {
        let mut classes: Vec<String> = std::fs::read_dir(root)
            .map_err(io(root))?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        classes.sort();
        let mut items = Vec::new();
        for (ci, c) in classes.iter().enumerate() {
            let dir = root.join(c);
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map_err(io(&dir))?
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_file() && is_image(p))
                .collect();
            files.sort();
            items.extend(files.into_iter().map(|f| (f, ci as u32)));
        }
        if items.is_empty() {
            return Err(DataError::Missing {
                what: "images".into(),
                dir: root.to_path_buf(),
                hint: "expected root/<class>/<image>.png|jpg".into(),
            });
        }
        Ok(Self { classes, items })
    }

    /// Decode every image to `size` x `size` RGB: the centred square of the shorter side's
    /// length, resized to `size` (the same as resizing the shorter side to `size` and
    /// centre-cropping, without ever building the resized full image).
    ///
    /// # Errors
    /// [`DataError::ImageSize`] when `size` is 0 or above [`MAX_IMAGE_SIZE`];
    /// [`DataError::Format`] naming an image that cannot be decoded (including images whose
    /// header declares more pixels than the decoder's 512 MiB memory limit allows) or that
    /// has no pixels.
    pub fn load(&self, size: usize) -> Result<ImageSet> {
        if size == 0 || size > MAX_IMAGE_SIZE {
            return Err(DataError::ImageSize {
                size,
                max: MAX_IMAGE_SIZE,
            });
        }
        let side = size as u32;
        let mut pixels = Vec::with_capacity(self.items.len().saturating_mul(3 * size * size));
        for (path, _) in &self.items {
            let bad = |reason: String| DataError::Format {
                path: path.clone(),
                format: "image",
                reason,
            };
            let img = image::open(path).map_err(|e| bad(e.to_string()))?;
            let (w, h) = (img.width(), img.height());
            if w == 0 || h == 0 {
                return Err(bad(format!("the image is {w} x {h} pixels")));
            }
            let square = w.min(h);
            let img = img
                .crop_imm((w - square) / 2, (h - square) / 2, square, square)
                .resize_exact(side, side, FilterType::Triangle)
                .to_rgb8();
            for c in 0..3 {
                for y in 0..side {
                    for x in 0..side {
                        pixels.push(img.get_pixel(x, y)[c]);
                    }
                }
            }
        }
        Ok(ImageSet {
            pixels,
            labels: self.items.iter().map(|(_, l)| *l).collect(),
            channels: 3,
            height: size,
            width: size,
            classes: self.classes.len(),
            normalization: IMAGENET_NORMALIZATION.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;

    #[test]
    fn lists_classes_and_decodes_images() {
        let dir = tempfile::tempdir().unwrap();
        for (class, color) in [("cat", [200u8, 0, 0]), ("dog", [0, 0, 200])] {
            std::fs::create_dir_all(dir.path().join(class)).unwrap();
            for i in 0..2 {
                let img = image::RgbImage::from_pixel(12 + i, 8, image::Rgb(color));
                img.save(dir.path().join(class).join(format!("{i}.png")))
                    .unwrap();
            }
        }
        std::fs::write(dir.path().join("cat").join("notes.txt"), "not an image").unwrap();
        let folder = ImageFolder::open(dir.path()).unwrap();
        assert_eq!(folder.classes, ["cat", "dog"]);
        assert_eq!(folder.items.len(), 4);
        let set = folder.load(6).unwrap();
        assert_eq!(
            (set.len(), set.channels, set.height, set.classes),
            (4, 3, 6, 2)
        );
        assert_eq!(set.labels, [0, 0, 1, 1]);
        assert_eq!(set.pixels[0], 200); // red plane of a red cat
        assert_eq!(set.pixels[3 * 36 * 2 + 2 * 36], 200); // blue plane of the first dog
    }

    #[test]
    fn empty_trees_and_broken_images_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            ImageFolder::open(dir.path()),
            Err(DataError::Missing { .. })
        ));
        std::fs::create_dir_all(dir.path().join("a")).unwrap();
        std::fs::write(dir.path().join("a").join("x.png"), b"truncated").unwrap();
        let folder = ImageFolder::open(dir.path()).unwrap();
        assert!(matches!(folder.load(4), Err(DataError::Format { .. })));
    }

    /// An encoded `w` x `h` image with pixels from `seed`.
    fn encoded(w: u32, h: u32, seed: u8, format: image::ImageFormat) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([seed, (x as u8).wrapping_mul(7), (y as u8) ^ seed])
        });
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    /// Load a one-image tree holding `bytes` as `name`: Ok with the right shape, or a typed
    /// format error naming the file.
    fn check_load(
        bytes: &[u8],
        name: &str,
        size: usize,
    ) -> core::result::Result<(), TestCaseError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("c")).unwrap();
        let path = dir.path().join("c").join(name);
        std::fs::write(&path, bytes).unwrap();
        let folder = ImageFolder::open(dir.path()).unwrap();
        match folder.load(size) {
            Ok(set) => {
                prop_assert_eq!(set.len(), 1);
                prop_assert_eq!(set.pixels.len(), 3 * size * size);
            }
            Err(DataError::Format {
                path: p,
                format: "image",
                ..
            }) => prop_assert_eq!(p, path),
            Err(e) => prop_assert!(false, "unexpected error {e:?}"),
        }
        Ok(())
    }

    /// A PNG whose header declares `w` x `h` pixels (with a valid header checksum) but holds
    /// the pixels of a 2 x 2 image.
    fn png_declaring(w: u32, h: u32) -> Vec<u8> {
        let mut png = encoded(2, 2, 1, image::ImageFormat::Png);
        assert_eq!(&png[12..16], b"IHDR");
        png[16..20].copy_from_slice(&w.to_be_bytes());
        png[20..24].copy_from_slice(&h.to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(&png[12..29]);
        png[29..33].copy_from_slice(&crc.sum().to_be_bytes());
        png
    }

    #[test]
    fn huge_declared_images_and_sizes_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("c")).unwrap();
        let path = dir.path().join("c").join("x.png");
        std::fs::write(&path, png_declaring(1 << 30, 1 << 30)).unwrap();
        let folder = ImageFolder::open(dir.path()).unwrap();
        let err = folder.load(8).unwrap_err();
        assert!(
            matches!(&err, DataError::Format { path: p, .. } if *p == path),
            "{err:?}"
        );
        for size in [0, MAX_IMAGE_SIZE + 1, usize::MAX] {
            let err = folder.load(size).unwrap_err();
            assert!(
                matches!(err, DataError::ImageSize { size: s, max: MAX_IMAGE_SIZE } if s == size),
                "{err:?}"
            );
        }
    }

    #[test]
    fn very_elongated_images_are_cropped_before_resizing() {
        // Resizing the shorter side to 224 first would make this a 224 x 11,200,000 image.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("c")).unwrap();
        image::RgbImage::from_pixel(1, 50_000, image::Rgb([9, 8, 7]))
            .save(dir.path().join("c").join("tall.png"))
            .unwrap();
        let set = ImageFolder::open(dir.path()).unwrap().load(224).unwrap();
        assert_eq!(set.pixels.len(), 3 * 224 * 224);
        assert_eq!(
            [
                set.pixels[0],
                set.pixels[224 * 224],
                set.pixels[2 * 224 * 224]
            ],
            [9, 8, 7]
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..256),
            png in any::<bool>(),
        ) {
            check_load(&bytes, if png { "x.png" } else { "x.jpg" }, 4)?;
        }

        #[test]
        fn damaged_images_give_typed_errors(
            (w, h) in (1u32..24, 1u32..24),
            seed in any::<u8>(),
            png in any::<bool>(),
            cut in any::<prop::sample::Index>(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), 1..=255u8), 1..4),
            size in 1usize..12,
        ) {
            let (format, name) = if png {
                (image::ImageFormat::Png, "x.png")
            } else {
                (image::ImageFormat::Jpeg, "x.jpg")
            };
            let file = encoded(w, h, seed, format);
            check_load(&file, name, size)?;
            check_load(&file[..cut.index(file.len())], name, size)?;
            let mut flipped = file;
            for (i, x) in flips {
                let i = i.index(flipped.len());
                flipped[i] ^= x;
            }
            check_load(&flipped, name, size)?;
        }

        #[test]
        fn huge_declared_dimensions_never_panic(w in any::<u32>(), h in any::<u32>()) {
            check_load(&png_declaring(w, h), "x.png", 4)?;
        }
    }
}
