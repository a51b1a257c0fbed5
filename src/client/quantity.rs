//! Resource amounts as people write them, in Kubernetes' notation, turned into the API's units
//! (cpu in millicores, memory in MiB, disk in GiB) and back for display.
//!
//! Decimal suffixes (`G`, `M`) are refused rather than guessed: `1G` is 1e9 bytes in
//! Kubernetes and 1 GiB to many people, and a cluster sized wrong by 7% is a bad surprise.

/// `500m` (millicores), `2` or `1.5` (cores).
pub fn cpu(s: &str) -> Result<u64, String> {
    let s = s.trim();
    if let Some(milli) = s.strip_suffix('m') {
        return milli
            .parse::<u64>()
            .map_err(|_| format!("{s:?}: millicores are a whole number, e.g. 500m"));
    }
    // Cores, with up to three decimals: exact in millicores.
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || (!frac.is_empty() && !digits(frac)) || frac.len() > 3 {
        return Err(format!(
            "{s:?} is not a CPU amount: write cores (2, 1.5) or millicores (500m)"
        ));
    }
    let whole: u64 = whole.parse().map_err(|_| format!("{s:?} is too large"))?;
    let frac: u64 = format!("{frac:0<3}").parse().unwrap_or(0);
    whole
        .checked_mul(1000)
        .and_then(|w| w.checked_add(frac))
        .ok_or_else(|| format!("{s:?} is too large"))
}

fn binary(s: &str, units: &[(&str, u64)], default_unit: &str, what: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let hint = || {
        let names: Vec<&str> = units.iter().map(|(u, _)| *u).collect();
        format!(
            "{s:?} is not a {what} amount: write a whole number with {}, or a bare number of {default_unit}",
            names.join(", ")
        )
    };
    let n: u64 = number.parse().map_err(|_| hint())?;
    let factor = if suffix.is_empty() {
        1
    } else {
        units
            .iter()
            .find(|(u, _)| *u == suffix)
            .map(|(_, f)| *f)
            .ok_or_else(hint)?
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// `512Mi`, `2Gi`, `1Ti`, or a bare number of MiB.
pub fn memory(s: &str) -> Result<u64, String> {
    binary(
        s,
        &[("Mi", 1), ("Gi", 1024), ("Ti", 1024 * 1024)],
        "MiB",
        "memory",
    )
}

/// `10Gi`, `1Ti`, or a bare number of GiB.
pub fn disk(s: &str) -> Result<u64, String> {
    binary(s, &[("Gi", 1), ("Ti", 1024)], "GiB", "disk")
}

/// One node's amount, which the API carries as a 32-bit number.
fn per_node(v: Result<u64, String>) -> Result<u32, String> {
    v.and_then(|v| u32::try_from(v).map_err(|_| format!("{v} is too large for one node")))
}

pub fn node_cpu(s: &str) -> Result<u32, String> {
    per_node(cpu(s))
}

pub fn node_memory(s: &str) -> Result<u32, String> {
    per_node(memory(s))
}

pub fn node_disk(s: &str) -> Result<u32, String> {
    per_node(disk(s))
}

/// Millicores for people: `500m`, `2`.
pub fn show_cpu(millicores: u64) -> String {
    if millicores.is_multiple_of(1000) {
        (millicores / 1000).to_string()
    } else {
        format!("{millicores}m")
    }
}

/// MiB for people: `512Mi`, `2Gi`.
pub fn show_memory(mib: u64) -> String {
    if mib >= 1024 && mib.is_multiple_of(1024) {
        format!("{}Gi", mib / 1024)
    } else {
        format!("{mib}Mi")
    }
}

/// GiB for people: `10Gi`, `2Ti`.
pub fn show_disk(gib: u64) -> String {
    if gib >= 1024 && gib.is_multiple_of(1024) {
        format!("{}Ti", gib / 1024)
    } else {
        format!("{gib}Gi")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_reads_cores_and_millicores() {
        assert_eq!(cpu("500m"), Ok(500));
        assert_eq!(cpu("2"), Ok(2000));
        assert_eq!(cpu("1.5"), Ok(1500));
        assert_eq!(cpu("0.25"), Ok(250));
        assert_eq!(cpu("0.125"), Ok(125));
        for bad in [
            "",
            "m",
            "1.2345",
            "-1",
            "two",
            "1.5m",
            "1e3",
            ".5",
            "99999999999999999999",
        ] {
            assert!(cpu(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(node_cpu("5000000").is_err());
    }

    #[test]
    fn memory_and_disk_read_binary_suffixes_only() {
        assert_eq!(memory("512Mi"), Ok(512));
        assert_eq!(memory("2Gi"), Ok(2048));
        assert_eq!(memory("1024"), Ok(1024));
        assert_eq!(disk("10Gi"), Ok(10));
        assert_eq!(disk("1Ti"), Ok(1024));
        assert_eq!(disk("20"), Ok(20));
        for bad in [
            "1G",
            "1GB",
            "1.5Gi",
            "",
            "Gi",
            "-1Gi",
            "99999999999999999Ti",
        ] {
            assert!(memory(bad).is_err(), "memory {bad:?} was accepted");
            assert!(disk(bad).is_err(), "disk {bad:?} was accepted");
        }
        assert!(node_memory("99999999Ti").is_err());
        assert!(memory("1G").unwrap_err().contains("Mi, Gi, Ti"));
    }

    #[test]
    fn amounts_show_as_they_are_written() {
        assert_eq!(show_cpu(500), "500m");
        assert_eq!(show_cpu(2000), "2");
        assert_eq!(show_memory(512), "512Mi");
        assert_eq!(show_memory(2048), "2Gi");
        assert_eq!(show_disk(10), "10Gi");
        assert_eq!(show_disk(2048), "2Ti");
        for m in [125_u64, 1000, 1500] {
            assert_eq!(cpu(&show_cpu(m)), Ok(m));
        }
    }
}
