//! The deploy guide's fly.toml block is this example's fly.toml, word for
//! word, so the file a reader copies is the file the tests check.

#[test]
fn the_deploy_guide_shows_the_shipped_fly_toml() {
    let guide = include_str!("../../../crates/fly-postgres/src/guide/deploy_on_fly.md");
    let shipped = include_str!("../fly.toml");
    let start = guide.find("```toml\n").expect("the guide has a toml block") + "```toml\n".len();
    let end = start + guide[start..].find("```").expect("the toml block ends");
    assert_eq!(&guide[start..end], shipped);
}
