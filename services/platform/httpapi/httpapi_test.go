package httpapi

import "testing"

func TestRoutes(t *testing.T) {
	rs := routes()
	if len(rs) != 10 {
		t.Errorf("%d routes from the annotations; want the 10 of the API", len(rs))
	}
	found := false
	for _, r := range rs {
		if m := r.path.FindStringSubmatch("/v1/users//following/bob"); r.verb == "DELETE" && m != nil {
			found = true
			if len(r.fields) != 2 || r.fields[0] != "follower_id" || r.fields[1] != "followee_id" || m[1] != "" || m[2] != "bob" {
				t.Errorf("DELETE route: fields %v, match %q; want follower_id empty and followee_id bob", r.fields, m)
			}
		}
	}
	if !found {
		t.Error("no DELETE route matches /v1/users//following/bob")
	}
}
