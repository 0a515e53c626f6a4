//! The README's fly.toml block is this example's fly.toml, word for word.

#[test]
fn readme_fly_toml_is_the_shipped_file() {
    let readme = include_str!("../../../README.md");
    let shipped = include_str!("../fly.toml");
    let start = readme.find("```toml\n").expect("README has a toml block") + "```toml\n".len();
    let end = start + readme[start..].find("```").expect("the toml block ends");
    assert_eq!(&readme[start..end], shipped);
}
