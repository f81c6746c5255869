# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
"""Options every module built on module_utils/aws_managed.py shares: the AWS connection and the
lifecycle (state, deletion safety, tags, waiting)."""
from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  endpoint_url:
    description:
      - The service's URL instead of AWS's own (a local moto server in the tests, a VPC endpoint).
      - Unset, boto3's chain applies (E(AWS_ENDPOINT_URL), shared config).
    type: str
    aliases: [aws_endpoint_url]
  region:
    description: The AWS region; unset, E(AWS_REGION) or E(AWS_DEFAULT_REGION) or the profile's.
    type: str
    aliases: [aws_region]
  access_key:
    description: The access key id; unset, boto3's chain (environment, shared credentials, instance role).
    type: str
    aliases: [aws_access_key_id, aws_access_key]
  secret_key:
    description: The secret access key, with O(access_key).
    type: str
    aliases: [aws_secret_access_key, aws_secret_key]
  session_token:
    description: The session token of temporary credentials.
    type: str
    aliases: [aws_session_token]
  profile:
    description: A profile of the shared AWS config and credentials files; not with O(access_key).
    type: str
    aliases: [aws_profile]
  validate_certs:
    description: Verify the TLS certificate of the endpoint.
    type: bool
    default: true
  aws_ca_bundle:
    description: A CA bundle to verify the endpoint's certificate with, instead of botocore's own.
    type: path
  state:
    description: Whether the resource exists.
    type: str
    choices: [present, absent]
    default: present
  allow_delete:
    description:
      - O(state=absent) deletes an existing resource only when this is true; otherwise the task fails
        naming this option and the resource is left as it is (in check mode too).
    type: bool
    default: false
  skip_final_snapshot:
    description: Delete without the final snapshot taken otherwise (named C(<id>-final-<UTC time>)).
    type: bool
    default: false
  tags:
    description: Tags of the resource; unset, its tags are not managed.
    type: dict
  purge_tags:
    description: Remove the tags not in O(tags) (when O(tags) is given).
    type: bool
    default: true
  wait:
    description: Wait until the resource is available after a change (or gone after deletion).
    type: bool
    default: true
  wait_timeout:
    description: Seconds to wait with O(wait); the task fails naming the last status after that.
    type: int
    default: 1800
"""
