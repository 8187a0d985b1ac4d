//! The "try it yourself" block printed after the story: shell commands that work as printed against
//! the running sandbox. They create the user's own AgentNode on the story's stack, wait for it to be
//! Ready, look at it with `kubectl hypersync`, play its agent with the node's own ServiceAccount
//! token (its Role lets it patch only that node's status) and wait for it to dissolve.

use std::path::Path;

use hypersync_operator::workload::identity::identity_name;

/// The first line of the block (tests find the commands after it, up to the next empty line).
pub const HEADER: &str = "Try it yourself, in another terminal";

/// The user's own AgentNode.
pub const NODE: &str = "my-analyst";

/// The objective the node is given and the value its agent reports.
const TARGET: u32 = 5;

/// What the block needs to know about the sandbox.
pub struct TryIt<'a> {
    /// The admin kubeconfig (absolute).
    pub kubeconfig: &'a Path,
    /// Where `kubectl-hypersync` was built (absolute).
    pub bin_dir: &'a Path,
    /// The namespace of the story.
    pub namespace: &'a str,
    /// The stack the user's node runs on (the story's).
    pub stack: &'a str,
    /// The point the story's node was placed near (r, theta degrees).
    pub anchor: Option<(f64, f64)>,
}

impl TryIt<'_> {
    /// The block: the header, an empty line, the commands (shell, comments as `#` lines), an empty
    /// line.
    pub fn render(&self) -> String {
        let ns = if self.namespace == "default" {
            String::new()
        } else {
            format!(" -n {}", self.namespace)
        };
        let near = self
            .anchor
            .map(|(r, theta)| format!("\n    near: {{point: {{r: {r}, thetaDegrees: {theta}}}}}"))
            .unwrap_or_default();
        let token = format!("sim-sa:{}:{}", self.namespace, identity_name(NODE));
        let stack = self.stack;
        let (kubeconfig, bin_dir) = (self.kubeconfig.display(), self.bin_dir.display());
        format!(
            r#"{HEADER} (this one narrates what you and the operator change; Ctrl-C here stops the sandbox):

# connect; kubectl hypersync (the plugin) is in {bin_dir}
export KUBECONFIG={kubeconfig} PATH={bin_dir}:$PATH
# your own AgentNode, on the stack the coordinator created
kubectl apply{ns} -f - <<'EOF'
apiVersion: hypersync.io/v1alpha1
kind: AgentNode
metadata:
  name: {NODE}
spec:
  stackRef: {{name: {stack}}}
  task:
    description: Check the code paths patched after the anomaly.
    tags: [security, coding]
  placement:
    mode: Semantic{near}
  objective:
    metric: {{name: findings_fixed, comparator: GreaterOrEqual, target: {TARGET}}}
  lifecycle: {{mode: Ephemeral, ttlSecondsAfterObjectiveMet: 10}}
EOF
kubectl wait{ns} --for=condition=Ready agentnode/{NODE} --timeout=3m
kubectl hypersync why{ns} {NODE}
kubectl hypersync disk{ns} > disk.svg
# play its agent: report the objective as the node's own ServiceAccount (it may patch only this node's status)
kubectl patch{ns} agentnode {NODE} --subresource=status --type=merge -p '{{"status":{{"objective":{{"observed":{TARGET}}}}}}}' --token {token}
kubectl wait{ns} --for=delete agentnode/{NODE} --timeout=2m
kubectl get hypersync{ns}
kubectl get events{ns} --sort-by=.metadata.creationTimestamp

"#
        )
    }
}

/// The commands of a printed block (the lines after [`HEADER`]'s line and one empty line, up to the
/// next empty line), as a shell script.
pub fn commands(output: &str) -> Option<String> {
    let mut lines = output.lines().skip_while(|l| !l.starts_with(HEADER));
    lines.next()?;
    if !lines.next()?.is_empty() {
        return None;
    }
    let script: Vec<&str> = lines.take_while(|l| !l.is_empty()).collect();
    (!script.is_empty()).then(|| script.join("\n") + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(namespace: &str) -> String {
        TryIt {
            kubeconfig: Path::new("/repo/.sandbox/kubeconfig"),
            bin_dir: Path::new("/repo/target/debug"),
            namespace,
            stack: "security-analyst",
            anchor: Some((0.4, 120.0)),
        }
        .render()
    }

    #[test]
    fn the_agent_acts_as_the_nodes_own_service_account() {
        let text = block("default");
        let script = commands(&format!("[  1.0s] before\n\n{text}Narrating\n")).expect("commands");
        assert!(script.starts_with("# connect"), "{script}");
        assert!(script.ends_with("--sort-by=.metadata.creationTimestamp\n"));
        assert!(
            script.contains(&format!(
                "--token sim-sa:default:{}\n",
                identity_name("my-analyst")
            )),
            "{script}"
        );
        assert!(script.contains(r#"-p '{"status":{"objective":{"observed":5}}}'"#));
        assert!(script.contains("near: {point: {r: 0.4, thetaDegrees: 120}}"));
        assert!(
            script.contains(
                "export KUBECONFIG=/repo/.sandbox/kubeconfig PATH=/repo/target/debug:$PATH"
            )
        );
        // The heredoc's YAML parses as the AgentNode it names.
        let yaml: String = script
            .lines()
            .skip_while(|l| !l.ends_with("<<'EOF'"))
            .skip(1)
            .take_while(|l| *l != "EOF")
            .map(|l| format!("{l}\n"))
            .collect();
        let node: hypersync_operator::api::AgentNode =
            serde_saphyr::from_str(&yaml).expect("the AgentNode parses");
        assert_eq!(node.metadata.name.as_deref(), Some(NODE));
        assert_eq!(node.spec.stack_ref.name, "security-analyst");
    }

    #[test]
    fn another_namespace_is_named_in_every_command() {
        let script = commands(&block("team-a")).expect("commands");
        for line in script.lines().filter(|l| l.starts_with("kubectl ")) {
            assert!(line.contains(" -n team-a"), "{line}");
        }
        assert!(script.contains("--token sim-sa:team-a:"));
    }

    #[test]
    fn no_block_no_commands() {
        assert_eq!(commands("Story complete\n"), None);
    }
}
