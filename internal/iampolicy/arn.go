package iampolicy

import (
	"fmt"
	"regexp"
	"strings"
)

// Place is where a host's resources live: the partition and account of every ARN, and the
// region of the regional ones that the configuration does not place elsewhere.
type Place struct {
	// Partition is aws, aws-cn or aws-us-gov (PartitionOf(Region) when empty).
	Partition string
	// Region is the host's region, e.g. us-east-2.
	Region string
	// Account is the 12-digit AWS account id.
	Account string
}

var accountRE = regexp.MustCompile(`^[0-9]{12}$`)

// Check says what is missing or malformed in p, naming the flags that set it.
func (p Place) Check() error {
	var bad []string
	if !accountRE.MatchString(p.Account) {
		bad = append(bad, fmt.Sprintf("account %q is not a 12-digit AWS account id (--account)", p.Account))
	}
	if p.Region == "" {
		bad = append(bad, "no region (--region)")
	}
	if len(bad) > 0 {
		return fmt.Errorf("%s", strings.Join(bad, "; "))
	}
	return nil
}

// PartitionOf returns the partition of region: aws-cn for cn-*, aws-us-gov for us-gov-*, aws
// otherwise (AWS General Reference, "Amazon Resource Names (ARNs)").
func PartitionOf(region string) string {
	switch {
	case strings.HasPrefix(region, "cn-"):
		return "aws-cn"
	case strings.HasPrefix(region, "us-gov-"):
		return "aws-us-gov"
	}
	return "aws"
}

func (p Place) partition() string {
	if p.Partition != "" {
		return p.Partition
	}
	return PartitionOf(p.Region)
}

// In returns p in region ("" keeps p's): a resource the configuration places in another
// region (the Fargate cluster, the backup bucket's KMS key).
func (p Place) In(region string) Place {
	if region != "" {
		p.Region = region
		if p.Partition == "" {
			p.Partition = PartitionOf(region)
		}
	}
	return p
}

// ARN returns arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE.
func (p Place) ARN(service, resource string) string {
	return fmt.Sprintf("arn:%s:%s:%s:%s:%s", p.partition(), service, p.Region, p.Account, resource)
}

// SSMParameter is a parameter's ARN: arn:P:ssm:R:A:parameter/NAME, NAME without its leading
// slash (Service Authorization Reference, AWS Systems Manager, resource type parameter:
// https://docs.aws.amazon.com/service-authorization/latest/reference/list_awssystemsmanager.html).
func (p Place) SSMParameter(name string) string {
	return p.ARN("ssm", "parameter/"+strings.TrimPrefix(name, "/"))
}

// S3Object is arn:P:s3:::BUCKET/KEY (KEY may end in * for a prefix); S3 ARNs carry no region or
// account (Service Authorization Reference, Amazon S3, resource type object:
// https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html).
func (p Place) S3Object(bucket, key string) string {
	return fmt.Sprintf("arn:%s:s3:::%s/%s", p.partition(), bucket, key)
}

// S3Bucket is arn:P:s3:::BUCKET (resource type bucket, same page as S3Object).
func (p Place) S3Bucket(bucket string) string {
	return fmt.Sprintf("arn:%s:s3:::%s", p.partition(), bucket)
}

// IAMRole is arn:P:iam::A:role/NAME; IAM ARNs carry no region (Service Authorization Reference,
// IAM, resource type role: https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsidentityandaccessmanagementiam.html).
// name may carry a path (path/name) or be * for every role.
func (p Place) IAMRole(name string) string {
	return fmt.Sprintf("arn:%s:iam::%s:role/%s", p.partition(), p.Account, name)
}

// IAMInstanceProfile is arn:P:iam::A:instance-profile/NAME (same page as IAMRole).
func (p Place) IAMInstanceProfile(name string) string {
	return fmt.Sprintf("arn:%s:iam::%s:instance-profile/%s", p.partition(), p.Account, name)
}

// KMSKey says how a policy names a KMS key given as an id, a key ARN, alias/NAME or an alias ARN.
// An id or key ARN is the key's own ARN (arn:P:kms:R:A:key/ID). An alias cannot be the resource of
// a cryptographic operation (IAM authorizes the key, not the alias), so it becomes every key of
// the account and region with the condition kms:ResourceAliases = alias/NAME ("Controlling access
// to KMS keys with aliases",
// https://docs.aws.amazon.com/kms/latest/developerguide/alias-authorization.html; Service
// Authorization Reference, AWS KMS, resource type key:
// https://docs.aws.amazon.com/service-authorization/latest/reference/list_awskeymanagementservice.html).
func (p Place) KMSKey(key string) (resource, alias string) {
	if strings.HasPrefix(key, "arn:") {
		parts := strings.SplitN(key, ":", 6)
		if len(parts) == 6 {
			q := Place{Partition: parts[1], Region: parts[3], Account: parts[4]}
			if strings.HasPrefix(parts[5], "alias/") {
				return q.ARN("kms", "key/*"), parts[5]
			}
			return key, ""
		}
	}
	if strings.HasPrefix(key, "alias/") {
		return p.ARN("kms", "key/*"), key
	}
	return p.ARN("kms", "key/"+key), ""
}

// KMSStatement is a statement allowing actions on key (see KMSKey), with the alias condition when
// the key is named by an alias.
func (p Place) KMSStatement(sid, key string, actions ...string) Statement {
	res, alias := p.KMSKey(key)
	s := Allow(sid, actions, []string{res})
	if alias != "" {
		s = s.When("ForAnyValue:StringEquals", "kms:ResourceAliases", alias)
	}
	return s
}
