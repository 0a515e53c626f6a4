//! A real browser against the demo's two regions: headless Chromium,
//! driven through chromedriver (WebDriver) by fantoccini. The browser
//! itself carries the `fly_lsn` cookie from the form's POST to the page the
//! redirect lands on: read-your-writes as a user sees it.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs
//! them); without them the test says so and passes, unless
//! `FLYPG_REQUIRE_BROWSER=1` (CI) makes that a failure.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

fn program(env: &str, default: &str) -> Option<PathBuf> {
    let path = std::env::var_os(env).map_or_else(|| PathBuf::from(default), PathBuf::from);
    path.exists().then_some(path)
}

/// Processes to stop however the test ends: each child's process group is
/// killed, then anything still carrying `marker` in its command line or
/// environment.
struct Reaper {
    children: Vec<Child>,
    marker: String,
}

impl Reaper {
    fn leftovers(&self) -> Vec<(i32, String)> {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.flatten()
            .filter_map(|e| {
                let pid: i32 = e.file_name().to_str()?.parse().ok()?;
                let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
                let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
                let cmdline =
                    String::from_utf8_lossy(&std::fs::read(e.path().join("cmdline")).ok()?)
                        .replace('\0', " ");
                let environ = std::fs::read(e.path().join("environ")).unwrap_or_default();
                let ours = cmdline.contains(&self.marker)
                    || String::from_utf8_lossy(&environ).contains(&self.marker);
                (state != 'Z' && ours && pid != std::process::id() as i32).then_some((pid, cmdline))
            })
            .collect()
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        for child in &mut self.children {
            let group = nix::unistd::Pid::from_raw(-(child.id() as i32));
            let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
        }
        for (pid, _) in self.leftovers() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        // The browser's profile folder, named by the marker; a failed run
        // must not leave it behind either.
        let _ = std::fs::remove_dir_all(std::env::temp_dir().join(&self.marker));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The demo's page URLs by region, from its `--serve` output. The rest of
/// its output is drained on a thread, so the demo never writes to a closed
/// pipe.
fn demo_urls(demo: &mut Child) -> Vec<(String, String)> {
    let stdout = demo.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut urls = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.starts_with("Try:") {
            break;
        }
        if let Some((region, url)) = line.trim().split_once(": http://") {
            urls.push((region.to_owned(), format!("http://{url}")));
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    urls
}

async fn titles(client: &Client) -> Vec<String> {
    let mut out = Vec::new();
    for li in client
        .find_all(Locator::Css("ul#todos li .title"))
        .await
        .unwrap()
    {
        out.push(li.text().await.unwrap());
    }
    out
}

/// Types `title` into the page's form (ticking "skip the wait" if asked)
/// and submits it; returns once the page the redirect leads to is loaded.
async fn add(client: &Client, title: &str, skip_wait: bool) {
    let field = client.find(Locator::Id("title")).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(title).await.unwrap();
    if skip_wait {
        client
            .find(Locator::Id("skip-wait"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }
    let button = client.find(Locator::Id("add")).await.unwrap();
    click_and_wait(client, &button).await;
}

/// Clicks `element` and waits until the browser has loaded the next page
/// (the old document, marked first, is gone and the new one is complete).
async fn click_and_wait(client: &Client, element: &fantoccini::elements::Element) {
    client
        .execute("window.__flypg_old_page = true;", Vec::new())
        .await
        .unwrap();
    element.click().await.unwrap();
    let started = Instant::now();
    loop {
        let state = client
            .execute(
                "return window.__flypg_old_page === undefined && document.readyState === 'complete';",
                Vec::new(),
            )
            .await;
        if matches!(state, Ok(serde_json::Value::Bool(true))) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the page did not load after the click"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn page_text(client: &Client) -> String {
    client
        .find(Locator::Css("body"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_browser_reads_its_writes_through_the_page() {
    let required = std::env::var_os("FLYPG_REQUIRE_BROWSER").is_some();
    let (Some(driver), Some(chromium)) = (
        program("CHROMEDRIVER", "/usr/bin/chromedriver"),
        program("CHROME_BIN", "/usr/bin/chromium"),
    ) else {
        assert!(
            !required,
            "FLYPG_REQUIRE_BROWSER is set but chromium/chromedriver are missing"
        );
        eprintln!(
            "skipped: no chromium or chromedriver (apt-get install chromium chromium-driver)"
        );
        return;
    };
    let marker = format!("flypg-browser-test-{}", std::process::id());
    let mut reaper = Reaper {
        children: Vec::new(),
        marker: marker.clone(),
    };

    // The demo's two regions; replicas apply 250 ms late, so a read right
    // after a write that skipped the wait is plainly stale.
    let mut demo = Command::new(env!("CARGO_BIN_EXE_flypg"))
        .args(["demo", "--serve", "--writes", "2", "--apply-ms", "250"])
        .env("FLYPG_TEST_TAG", &marker)
        .env_remove("FLY_APP_NAME")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let urls = tokio::task::block_in_place(|| demo_urls(&mut demo));
    reaper.children.push(demo);
    let url = |region: &str| {
        urls.iter()
            .find(|(r, _)| r == region)
            .map(|(_, u)| u.clone())
            .unwrap_or_else(|| panic!("no {region} URL in {urls:?}"))
    };
    let (lax, syd) = (url("lax"), url("syd"));

    let port = free_port();
    let profile = std::env::temp_dir().join(&marker);
    reaper.children.push(
        Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-dev-shm-usage",
                "--disable-gpu",
                "--window-size=900,820",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    let started = Instant::now();
    let client = loop {
        // chromedriver listens on plain HTTP on loopback: no TLS stack.
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(capabilities.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(client) => break client,
            Err(e) if started.elapsed() < Duration::from_secs(20) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("chromedriver did not start a session: {e}"),
        }
    };

    // The lax page, as a person opens it.
    client.goto(&lax).await.unwrap();
    let region = client.find(Locator::Id("region")).await.unwrap();
    assert_eq!(region.text().await.unwrap(), "lax");

    // Add through the form: the page the redirect lands on has it.
    add(&client, "milk from the browser", false).await;
    assert!(
        titles(&client)
            .await
            .contains(&"milk from the browser".to_owned()),
        "read-your-writes in the browser: {:?}",
        titles(&client).await
    );
    let text = page_text(&client).await;
    assert!(text.contains("Your last write"), "{text}");
    assert!(text.contains("wait for this region's replica"), "{text}");

    // "Skip the wait": the list it lands on misses the new item at least
    // once (the replica has not replayed it yet).
    let mut stale = 0;
    for i in 0..5 {
        let title = format!("quick {i}");
        add(&client, &title, true).await;
        assert!(page_text(&client).await.contains("wait skipped"));
        if !titles(&client).await.contains(&title) {
            stale += 1;
        }
    }
    assert!(stale > 0, "no stale read in 5 tries with the wait skipped");

    // The primary region's page shows the item too.
    client.goto(&syd).await.unwrap();
    assert_eq!(
        client
            .find(Locator::Id("region"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "syd"
    );
    assert!(
        titles(&client)
            .await
            .contains(&"milk from the browser".to_owned())
    );

    // A duplicate title: the 409 in words on the page, not a raw error.
    client.goto(&lax).await.unwrap();
    add(&client, "milk from the browser", false).await;
    let text = page_text(&client).await;
    assert!(
        text.contains("There is already a todo called “milk from the browser”."),
        "{text}"
    );
    assert!(!text.contains("SQLSTATE"), "{text}");
    // An empty title: a readable message.
    add(&client, "", false).await;
    assert!(page_text(&client).await.contains("title must not be empty"));

    // A tidy page for the screenshot: two more todos, one done.
    client.goto(&lax).await.unwrap();
    add(&client, "eggs", false).await;
    add(&client, "bread", false).await;
    let done = client
        .find(Locator::Css("ul#todos li:first-child button"))
        .await
        .unwrap();
    click_and_wait(&client, &done).await;
    let png = client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let shot = std::env::var_os("FLYPG_SCREENSHOT").map_or_else(
        || PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("todo-page.png"),
        PathBuf::from,
    );
    std::fs::write(&shot, &png).unwrap();
    eprintln!("screenshot: {}", shot.display());
    client.close().await.unwrap();

    // SIGTERM the demo: it stops its apps and PostgreSQL.
    let demo = &mut reaper.children[0];
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(demo.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while demo.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        demo.try_wait().unwrap().is_some(),
        "the demo stops on SIGTERM"
    );
    let driver = &mut reaper.children[1];
    let _ = driver.kill();
    let _ = driver.wait();
    // Nothing of this test is left: no app, no browser, no driver.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !reaper.leftovers().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(reaper.leftovers(), Vec::new(), "processes left behind");
}
