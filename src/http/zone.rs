//! The buyer's time zone from a shipping address: the country, and for
//! countries that span several zones the state or province, as webhooks
//! give them (ISO 3166 codes). Sending hours are local to the buyer, and a
//! webhook names no zone. An address this table cannot place gets none,
//! and the order falls back to `[defaults] time_zone`.

use chrono_tz::Tz;

/// The zone for `country` (ISO 3166-1 alpha-2) and, where it matters,
/// `region` (the subdivision code without the country, such as `CA` or
/// `ON`).
pub fn for_address(country: &str, region: Option<&str>) -> Option<Tz> {
    let country = country.trim().to_ascii_uppercase();
    let region = region.map(|r| r.trim().to_ascii_uppercase());
    let region = region.as_deref().unwrap_or("");
    let name = match country.as_str() {
        "US" => us(region),
        "CA" => canada(region),
        "AU" => australia(region),
        "BR" => match region {
            "AM" | "RR" | "RO" | "MT" | "MS" => "America/Manaus",
            "AC" => "America/Rio_Branco",
            _ => "America/Sao_Paulo",
        },
        "MX" => match region {
            "BC" => "America/Tijuana",
            "SON" => "America/Hermosillo",
            "CHH" | "SIN" | "NAY" | "BCS" => "America/Mazatlan",
            _ => "America/Mexico_City",
        },
        "RU" => "Europe/Moscow",
        _ => single_zone(&country)?,
    };
    name.parse().ok()
}

fn us(state: &str) -> &'static str {
    match state {
        "HI" => "Pacific/Honolulu",
        "AK" => "America/Anchorage",
        "AZ" => "America/Phoenix",
        "CA" | "NV" | "OR" | "WA" => "America/Los_Angeles",
        "CO" | "ID" | "MT" | "NM" | "UT" | "WY" => "America/Denver",
        "AL" | "AR" | "IA" | "IL" | "KS" | "LA" | "MN" | "MO" | "MS" | "ND" | "NE" | "OK"
        | "SD" | "TX" | "WI" => "America/Chicago",
        "PR" | "VI" => "America/Puerto_Rico",
        "GU" | "MP" => "Pacific/Guam",
        _ => "America/New_York",
    }
}

fn canada(province: &str) -> &'static str {
    match province {
        "BC" | "YT" => "America/Vancouver",
        "AB" | "NT" => "America/Edmonton",
        "SK" => "America/Regina",
        "MB" => "America/Winnipeg",
        "NB" | "NS" | "PE" => "America/Halifax",
        "NL" => "America/St_Johns",
        _ => "America/Toronto",
    }
}

fn australia(state: &str) -> &'static str {
    match state {
        "WA" => "Australia/Perth",
        "SA" => "Australia/Adelaide",
        "NT" => "Australia/Darwin",
        "QLD" => "Australia/Brisbane",
        "TAS" => "Australia/Hobart",
        _ => "Australia/Sydney",
    }
}

/// Countries with one zone (for sending hours), by ISO code.
fn single_zone(country: &str) -> Option<&'static str> {
    Some(match country {
        "GB" | "IM" | "JE" | "GG" => "Europe/London",
        "IE" => "Europe/Dublin",
        "DE" => "Europe/Berlin",
        "AT" => "Europe/Vienna",
        "CH" | "LI" => "Europe/Zurich",
        "FR" | "MC" => "Europe/Paris",
        "BE" => "Europe/Brussels",
        "NL" => "Europe/Amsterdam",
        "LU" => "Europe/Luxembourg",
        "ES" => "Europe/Madrid",
        "PT" => "Europe/Lisbon",
        "IT" | "SM" | "VA" => "Europe/Rome",
        "DK" => "Europe/Copenhagen",
        "SE" => "Europe/Stockholm",
        "NO" => "Europe/Oslo",
        "FI" => "Europe/Helsinki",
        "IS" => "Atlantic/Reykjavik",
        "PL" => "Europe/Warsaw",
        "CZ" => "Europe/Prague",
        "SK" => "Europe/Bratislava",
        "HU" => "Europe/Budapest",
        "SI" => "Europe/Ljubljana",
        "HR" => "Europe/Zagreb",
        "RO" => "Europe/Bucharest",
        "BG" => "Europe/Sofia",
        "GR" | "CY" => "Europe/Athens",
        "EE" => "Europe/Tallinn",
        "LV" => "Europe/Riga",
        "LT" => "Europe/Vilnius",
        "UA" => "Europe/Kyiv",
        "TR" => "Europe/Istanbul",
        "IL" => "Asia/Jerusalem",
        "AE" => "Asia/Dubai",
        "SA" => "Asia/Riyadh",
        "IN" => "Asia/Kolkata",
        "SG" => "Asia/Singapore",
        "MY" => "Asia/Kuala_Lumpur",
        "TH" => "Asia/Bangkok",
        "VN" => "Asia/Ho_Chi_Minh",
        "PH" => "Asia/Manila",
        "HK" => "Asia/Hong_Kong",
        "TW" => "Asia/Taipei",
        "CN" => "Asia/Shanghai",
        "JP" => "Asia/Tokyo",
        "KR" => "Asia/Seoul",
        "NZ" => "Pacific/Auckland",
        "ZA" => "Africa/Johannesburg",
        "EG" => "Africa/Cairo",
        "NG" => "Africa/Lagos",
        "KE" => "Africa/Nairobi",
        "AR" => "America/Argentina/Buenos_Aires",
        "CL" => "America/Santiago",
        "CO" => "America/Bogota",
        "PE" => "America/Lima",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_pick_the_zone_where_a_country_has_several() {
        let name = |c: &str, r: Option<&str>| for_address(c, r).map(|z| z.name().to_string());
        assert_eq!(name("US", Some("KY")).as_deref(), Some("America/New_York"));
        assert_eq!(
            name("us", Some("ca")).as_deref(),
            Some("America/Los_Angeles")
        );
        assert_eq!(name("CA", Some("ON")).as_deref(), Some("America/Toronto"));
        assert_eq!(name("DE", None).as_deref(), Some("Europe/Berlin"));
        assert_eq!(name("ZZ", None), None);
    }
}
