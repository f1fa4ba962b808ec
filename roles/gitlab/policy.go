package gitlab

import (
	"context"
	"net/url"
	"strings"

	"github.com/glbootstrap/glbootstrap/internal/backup"
	"github.com/glbootstrap/glbootstrap/internal/config"
	"github.com/glbootstrap/glbootstrap/internal/iampolicy"
	"github.com/glbootstrap/glbootstrap/internal/role"
)

// The GitLab host's instance profile: the configuration read at every apply and by the backup
// service (ssm:/NAME or s3://BUCKET/KEY), the initial root password parameter, the published
// private URL (PutParameter, read first), and the backup bucket: Omnibus's gitlab-backup uploads
// the application archive and glbootstrap the config archive under the prefix (PutObject,
// multipart, AbortMultipartUpload when an upload fails), glbootstrap verifies both (HeadObject is
// authorized by s3:GetObject), "glbootstrap backup status" lists the newest (ListBucket limited to
// the prefix with s3:prefix), and the backup-preflight phase reads the bucket's region (GetBucketLocation) and
// writes and deletes one marker object (internal/backup.MarkerKey). With backup.kms_key_id, S3
// calls KMS on the host's behalf: a multipart upload with SSE-KMS needs kms:GenerateDataKey and
// kms:Decrypt ("Multipart upload API and permissions",
// https://docs.aws.amazon.com/AmazonS3/latest/userguide/mpuoverview.html#mpuAndPermissions).
//
// Actions, resource types and condition keys: Service Authorization Reference, Amazon S3
// https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html
// (object and bucket resources, s3:prefix on ListBucket), AWS Systems Manager
// https://docs.aws.amazon.com/service-authorization/latest/reference/list_awssystemsmanager.html
// (GetParameter and PutParameter on parameter/NAME), AWS KMS
// https://docs.aws.amazon.com/service-authorization/latest/reference/list_awskeymanagementservice.html.

// policy is the GitLab host's least-privilege policy for cfg (valid, defaults filled); the
// host's region is p's, the backup bucket's backup.region or else the host's.
func policy(cfg *Config, p iampolicy.Place, source string) iampolicy.Document {
	var st []iampolicy.Statement
	var notes []string
	var params, objects []string
	secure := false
	if name, ok := strings.CutPrefix(source, "ssm:"); ok {
		params = append(params, p.SSMParameter(name))
	}
	if u, err := url.Parse(source); err == nil && u.Scheme == "s3" && u.Host != "" {
		objects = append(objects, p.S3Object(u.Host, strings.TrimPrefix(u.Path, "/")))
	}
	if n := cfg.GitLab.InitialRootPasswordParameter; n != "" {
		params = append(params, p.SSMParameter(n))
		secure = true
	}
	if t := cfg.GitLab.TLS; t.CertificateParameter != "" || t.KeyParameter != "" {
		// The certificate and key Omnibus serves with TLS passthrough: SSM parameters or S3 objects.
		for _, src := range []string{t.CertificateParameter, t.KeyParameter} {
			if u, err := url.Parse(src); err == nil && u.Scheme == "s3" && u.Host != "" {
				objects = append(objects, p.S3Object(u.Host, strings.TrimPrefix(u.Path, "/")))
			} else if src != "" {
				params = append(params, p.SSMParameter(src))
				secure = true
			}
		}
	}
	if n := cfg.GitLab.PublishPrivateURLParameter; n != "" {
		// ssm.PutStep reads the parameter first and writes only a different value.
		params = append(params, p.SSMParameter(n))
	}
	if len(params) > 0 {
		st = append(st, iampolicy.Allow("ReadParameters", []string{"ssm:GetParameter"}, params))
	}
	if n := cfg.GitLab.PublishPrivateURLParameter; n != "" {
		st = append(st, iampolicy.Allow("PublishPrivateURL", []string{"ssm:PutParameter"}, []string{p.SSMParameter(n)}))
	}
	if len(objects) > 0 {
		st = append(st, iampolicy.Allow("ReadConfiguration", []string{"s3:GetObject"}, objects))
	}
	if secure || strings.HasPrefix(source, "ssm:") {
		notes = append(notes, "no kms:Decrypt is granted for SecureString parameters: the AWS managed key aws/ssm "+
			"already lets every principal of the account decrypt through SSM "+
			"(https://docs.aws.amazon.com/systems-manager/latest/userguide/ps-restrict-decryption.html); "+
			"if they are encrypted with a customer managed key, add kms:Decrypt on that key")
	}
	if b := cfg.Backup; b != nil {
		prefix := b.PrefixOrDefault()
		list := iampolicy.Allow("BackupList", []string{"s3:ListBucket"}, []string{p.S3Bucket(b.Bucket)})
		if prefix != "" {
			// An empty prefix lists the whole bucket; a request without a prefix has no
			// s3:prefix to match.
			list = list.When("StringLike", "s3:prefix", prefix+"*")
		}
		st = append(st,
			iampolicy.Allow("BackupWrite", []string{"s3:AbortMultipartUpload", "s3:PutObject"}, []string{p.S3Object(b.Bucket, prefix+"*")}),
			iampolicy.Allow("BackupVerify", []string{"s3:GetObject"}, []string{p.S3Object(b.Bucket, prefix+"*")}),
			list,
			iampolicy.Allow("BackupPreflightBucket", []string{"s3:GetBucketLocation"}, []string{p.S3Bucket(b.Bucket)}),
			iampolicy.Allow("BackupPreflightMarker", []string{"s3:DeleteObject"}, []string{p.S3Object(b.Bucket, prefix+backup.MarkerKey)}))
		if b.KMSKeyID != "" {
			st = append(st, p.In(b.Region).KMSStatement("BackupEncryption", b.KMSKeyID, "kms:Decrypt", "kms:GenerateDataKey"))
		} else {
			notes = append(notes, "backups are encrypted with SSE-S3 (backup.kms_key_id is not set): no KMS permission is needed")
		}
		// The configuration archive (gitlab-secrets.json, gitlab.rb) where backup.secrets puts it:
		// by default under the application prefix (covered above), else its own bucket or prefix.
		sBucket, sPrefix, sKey := b.SecretsLocation()
		buckets := []string{p.S3Bucket(b.Bucket)}
		if sBucket != b.Bucket || !strings.HasPrefix(sPrefix, prefix) {
			slist := iampolicy.Allow("SecretsList", []string{"s3:ListBucket"}, []string{p.S3Bucket(sBucket)})
			if sPrefix != "" {
				slist = slist.When("StringLike", "s3:prefix", sPrefix+"*")
			}
			st = append(st,
				iampolicy.Allow("SecretsWrite", []string{"s3:AbortMultipartUpload", "s3:PutObject"}, []string{p.S3Object(sBucket, sPrefix+"*")}),
				iampolicy.Allow("SecretsVerify", []string{"s3:GetObject"}, []string{p.S3Object(sBucket, sPrefix+"*")}),
				slist,
				iampolicy.Allow("SecretsPreflightMarker", []string{"s3:DeleteObject"}, []string{p.S3Object(sBucket, sPrefix+backup.MarkerKey)}))
			if sBucket != b.Bucket {
				st = append(st, iampolicy.Allow("SecretsPreflightBucket", []string{"s3:GetBucketLocation"}, []string{p.S3Bucket(sBucket)}))
				buckets = append(buckets, p.S3Bucket(sBucket))
			}
		}
		if sKey != "" && sKey != b.KMSKeyID {
			st = append(st, p.In(b.Region).KMSStatement("SecretsEncryption", sKey, "kms:Decrypt", "kms:GenerateDataKey"))
		}
		// backup-preflight warns when no lifecycle rule expires the prefixes.
		st = append(st, iampolicy.Allow(iampolicy.ChecksSid+"BackupLifecycle", []string{"s3:GetLifecycleConfiguration"}, buckets))
	}
	if len(st) == 0 {
		notes = append(notes, "this configuration makes the GitLab host call no AWS API: the instance profile needs no permission beyond SSM Session Manager's (AmazonSSMManagedInstanceCore)")
	}
	return iampolicy.Document{Policy: iampolicy.New(st...), Notes: notes}
}

// Policy is role.Definition's Policy.
func Policy(_ context.Context, doc config.Document, in role.PolicyInput) (iampolicy.Document, error) {
	return policy(doc.(*Config), in.Place, in.Source), nil
}
