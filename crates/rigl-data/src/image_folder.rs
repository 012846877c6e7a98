//! ImageNet-style image folders: `root/<class>/<image>.{png,jpg,jpeg}`, classes in sorted
//! order, each image resized (shorter side) and centre-cropped to a square.

use crate::dataset::ImageSet;
use crate::error::{DataError, Result, io};
use image::imageops::FilterType;
use std::path::{Path, PathBuf};

/// The ImageNet channel statistics, the usual choice for natural images.
pub const IMAGENET_NORMALIZATION: [(f32, f32); 3] =
    [(0.485, 0.229), (0.456, 0.224), (0.406, 0.225)];

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

    /// Decode every image to `size` x `size` RGB (resize the shorter side, centre crop).
    ///
    /// # Errors
    /// [`DataError::Format`] naming an image that cannot be decoded.
    pub fn load(&self, size: usize) -> Result<ImageSet> {
        let mut pixels = Vec::with_capacity(self.items.len() * 3 * size * size);
        for (path, _) in &self.items {
            let img = image::open(path).map_err(|e| DataError::Format {
                path: path.clone(),
                format: "image",
                reason: e.to_string(),
            })?;
            let (w, h) = (img.width().max(1), img.height().max(1));
            let scale = size as f64 / w.min(h) as f64;
            let (nw, nh) = (
                ((w as f64 * scale).round() as u32).max(size as u32),
                ((h as f64 * scale).round() as u32).max(size as u32),
            );
            let img = img
                .resize_exact(nw, nh, FilterType::Triangle)
                .crop_imm(
                    (nw - size as u32) / 2,
                    (nh - size as u32) / 2,
                    size as u32,
                    size as u32,
                )
                .to_rgb8();
            for c in 0..3 {
                for y in 0..size as u32 {
                    for x in 0..size as u32 {
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
}
