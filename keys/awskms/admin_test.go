package awskms

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/logstore/logstore/keys/kmstest"
)

func adminClient(s *kmstest.Server) *kms.Client {
	return kms.NewFromConfig(aws.Config{Region: s.Region, BaseEndpoint: aws.String(s.URL()),
		Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "SECRET", "")})
}

// adminCall runs a key-administration operation through the real SDK.
func adminCall(s *kmstest.Server, op, keyID string) error {
	c, ctx := adminClient(s), context.Background()
	id := aws.String(keyID)
	var err error
	switch op {
	case "DisableKey":
		_, err = c.DisableKey(ctx, &kms.DisableKeyInput{KeyId: id})
	case "EnableKey":
		_, err = c.EnableKey(ctx, &kms.EnableKeyInput{KeyId: id})
	case "ScheduleKeyDeletion":
		_, err = c.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: id, PendingWindowInDays: aws.Int32(7)})
	case "CancelKeyDeletion":
		_, err = c.CancelKeyDeletion(ctx, &kms.CancelKeyDeletionInput{KeyId: id})
	case "RotateKeyOnDemand":
		_, err = c.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: id})
	case "EnableKeyRotation":
		_, err = c.EnableKeyRotation(ctx, &kms.EnableKeyRotationInput{KeyId: id})
	}
	return err
}

func adminAlias(s *kmstest.Server, alias, keyID string) error {
	_, err := adminClient(s).CreateAlias(context.Background(), &kms.CreateAliasInput{AliasName: aws.String(alias), TargetKeyId: aws.String(keyID)})
	return err
}
