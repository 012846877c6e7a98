//! Parameter path patterns: `*` matches any run of characters, everything else itself.
//!
//! A pattern matches a parameter when it matches its full path (`encoder.fc1.weight`) or its
//! module path (`encoder.fc1`). `fc1` therefore names the weight of `fc1`, and `*.conv*` the
//! kernels of every conv layer.

/// Whether `pattern` matches the parameter at `path` (see the module docs).
pub fn matches_param(pattern: &str, path: &str) -> bool {
    glob(pattern.as_bytes(), path.as_bytes())
        || path
            .rsplit_once('.')
            .is_some_and(|(module, _)| glob(pattern.as_bytes(), module.as_bytes()))
}

/// Glob match with `*` only, iterative with backtracking to the last star.
fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_module_and_wildcards() {
        assert!(matches_param("fc1.weight", "fc1.weight"));
        assert!(matches_param("fc1", "fc1.weight"));
        assert!(!matches_param("fc", "fc1.weight"));
        assert!(matches_param("fc*", "fc1.weight"));
        assert!(matches_param("*.conv*", "layer1.0.conv2.weight"));
        assert!(matches_param("layer1.*.conv1", "layer1.0.conv1.weight"));
        assert!(!matches_param("layer1.*.conv1", "layer2.0.conv1.weight"));
        assert!(matches_param("*", "a.b"));
        assert!(!matches_param("", "a.b"));
        assert!(matches_param("a**b", "a.weight.b"));
    }
}
