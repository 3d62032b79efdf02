//! The buyer's time zone from the shipping address, for orders that name
//! none: the country's zone where it has one; where it has several, the
//! zone of the state or province (US, CA, AU, BR, MX and RU, from
//! [`regions`]); else nothing, and `[defaults] time_zone` applies.
//!
//! Countries and their zones come from Debian's tzdata, embedded at build
//! time from the committed copies beside this file: `zone.tab` (one country
//! a line, "the most populous zones first" within a country, which
//! zone1970.tab does not keep because it groups countries that share a
//! zone) and `iso3166.tab` (country names, for exports that write "South
//! Africa" rather than "ZA"). A country with several zones that the region
//! table does not cover (Germany: Berlin and Büsingen) gets its most
//! populous zone.

mod regions;

use std::collections::HashMap;
use std::sync::OnceLock;

use chrono_tz::Tz;

const ZONE_TAB: &str = include_str!("zone.tab");
const ISO3166_TAB: &str = include_str!("iso3166.tab");

/// Country code → its zones, most populous first.
fn zones() -> &'static HashMap<&'static str, Vec<Tz>> {
    static ZONES: OnceLock<HashMap<&'static str, Vec<Tz>>> = OnceLock::new();
    ZONES.get_or_init(|| {
        let mut map: HashMap<&str, Vec<Tz>> = HashMap::new();
        for line in ZONE_TAB.lines().filter(|l| !l.starts_with('#')) {
            let mut columns = line.split('\t');
            let (Some(code), Some(_), Some(name)) =
                (columns.next(), columns.next(), columns.next())
            else {
                continue;
            };
            // A zone newer than chrono-tz's database is left out.
            if let Ok(zone) = name.parse::<Tz>() {
                map.entry(code).or_default().push(zone);
            }
        }
        map
    })
}

/// Upper-cased country name → code.
fn country_names() -> &'static HashMap<String, &'static str> {
    static NAMES: OnceLock<HashMap<String, &'static str>> = OnceLock::new();
    NAMES.get_or_init(|| {
        ISO3166_TAB
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('\t'))
            .map(|(code, name)| (name.trim().to_uppercase(), code))
            .collect()
    })
}

/// The ISO 3166 code of `country`, written as a code or as tzdata names it.
fn country_code(country: &str) -> Option<&'static str> {
    let upper = country.trim().to_uppercase();
    if let Some((code, _)) = zones().get_key_value(upper.as_str()) {
        return Some(code);
    }
    country_names().get(&upper).copied()
}

/// The zone of a shipping address, if it tells one.
pub fn from_address(country: &str, region: &str) -> Option<Tz> {
    let code = country_code(country)?;
    let zones = zones().get(code)?;
    if let [only] = zones.as_slice() {
        return Some(*only);
    }
    if regions::covers(code) {
        return regions::zone(code, region);
    }
    zones.first().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(country: &str, region: &str) -> Option<String> {
        from_address(country, region).map(|z| z.name().to_string())
    }

    #[test]
    fn a_country_with_one_zone_needs_no_region() {
        assert_eq!(zone("ZA", "WC").as_deref(), Some("Africa/Johannesburg"));
        assert_eq!(zone("gb", "").as_deref(), Some("Europe/London"));
        assert_eq!(zone("Japan", "").as_deref(), Some("Asia/Tokyo"));
        assert_eq!(zone("IT", "").as_deref(), Some("Europe/Rome"));
    }

    #[test]
    fn a_country_with_several_zones_goes_by_region() {
        assert_eq!(zone("US", "CA").as_deref(), Some("America/Los_Angeles"));
        assert_eq!(
            zone("US", "California").as_deref(),
            Some("America/Los_Angeles")
        );
        assert_eq!(zone("US", "NY").as_deref(), Some("America/New_York"));
        assert_eq!(zone("US", "AK").as_deref(), Some("America/Anchorage"));
        assert_eq!(zone("CA", "BC").as_deref(), Some("America/Vancouver"));
        assert_eq!(zone("AU", "WA").as_deref(), Some("Australia/Perth"));
        assert_eq!(zone("BR", "RJ").as_deref(), Some("America/Sao_Paulo"));
        assert_eq!(zone("MX", "ROO").as_deref(), Some("America/Cancun"));
        assert_eq!(zone("RU", "NVS").as_deref(), Some("Asia/Novosibirsk"));
        // Covered countries without a known region: the default applies.
        assert_eq!(zone("US", ""), None);
        assert_eq!(zone("US", "Atlantis"), None);
        // Not covered: the most populous zone.
        assert_eq!(zone("DE", "").as_deref(), Some("Europe/Berlin"));
        assert_eq!(zone("ES", "").as_deref(), Some("Europe/Madrid"));
    }

    #[test]
    fn an_unknown_country_tells_nothing() {
        assert_eq!(zone("", ""), None);
        assert_eq!(zone("XX", ""), None);
    }
}
