//! Database URI parse → print → parse round-trip.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sqlguard::teleport::DatabaseUri;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(uri) = DatabaseUri::parse(s) {
        let printed = uri.to_string();
        let again = DatabaseUri::parse(&printed).expect("a printed URI parses");
        assert_eq!(again, uri);
        assert_eq!(again.to_string(), printed);
    }
});
